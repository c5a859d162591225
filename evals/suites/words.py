"""Curated word tables behind the ``word_knowledge`` suite (and some words other suites use).

The tables are built so that a distractor drawn from the same table cannot also be right:
each word is in at most one antonym pair and one synonym pair, no word belongs to two
categories (no "orange": fruit and color; no "salmon", "peach", "plum", "cherry", "lemon",
"coffee": also colors; no "triangle": also an instrument; no "square": also a tool), and an animal whose young has two common names is left out (deer:
fawn or calf). The wrong plural and past-tense forms are written by hand, so none of them is
an accepted variant: words with two accepted forms ("busses", "deers", "dreamt", "woke" /
"waked") are left out, and so are forms another sense of the word makes right ("still lifes",
"computer mouses", "leafs", "halfs", "foots").
"""

from __future__ import annotations

# each word in exactly one pair; both directions are asked. Pairs whose words are also near
# opposites of another pair's word are left out (hard/soft: "soft" is also the opposite of
# "loud"; good/bad: "poor"; ancient/modern: "old").
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("wet", "dry"),
    ("full", "empty"),
    ("open", "closed"),
    ("light", "dark"),
    ("rich", "poor"),
    ("early", "late"),
    ("loud", "quiet"),
    ("strong", "weak"),
    ("clean", "dirty"),
    ("thick", "thin"),
    ("high", "low"),
    ("day", "night"),
    ("win", "lose"),
    ("buy", "sell"),
    ("push", "pull"),
    ("true", "false"),
    ("alive", "dead"),
    ("first", "last"),
    ("start", "finish"),
    ("always", "never"),
    ("love", "hate"),
    ("question", "answer"),
    ("long", "short"),
    ("young", "old"),
    ("wide", "narrow"),
    ("deep", "shallow"),
    ("safe", "dangerous"),
    ("cheap", "expensive"),
    ("asleep", "awake"),
    ("friend", "enemy"),
    ("remember", "forget"),
    ("laugh", "cry"),
    ("smooth", "rough"),
    ("tight", "loose"),
    ("male", "female"),
    ("increase", "decrease"),
    ("maximum", "minimum"),
    ("entrance", "exit"),
    ("success", "failure"),
    ("war", "peace"),
    ("sunrise", "sunset"),
    ("summer", "winter"),
    ("before", "after"),
    ("more", "less"),
    ("come", "go"),
    ("float", "sink"),
    ("appear", "disappear"),
    ("possible", "impossible"),
    ("visible", "invisible"),
    ("polite", "rude"),
    ("import", "export"),
)

# direction -> its opposite, both ways; the compass ones are also asked as "turn around"
COMPASS_PAIRS: tuple[tuple[str, str], ...] = (
    ("north", "south"),
    ("east", "west"),
    ("northeast", "southwest"),
    ("northwest", "southeast"),
)
DIRECTION_PAIRS: tuple[tuple[str, str], ...] = COMPASS_PAIRS + (
    ("up", "down"),
    ("left", "right"),
    ("inside", "outside"),
    ("forward", "backward"),
    ("clockwise", "counterclockwise"),
)

# each word in exactly one pair; no word of one pair means the same as a word of another
# (so no shut/close: "close" also means "end"; no buy/purchase: "shop")
SYNONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("big", "large"),
    ("small", "little"),
    ("happy", "glad"),
    ("fast", "quick"),
    ("begin", "start"),
    ("end", "finish"),
    ("smart", "clever"),
    ("angry", "mad"),
    ("sick", "ill"),
    ("easy", "simple"),
    ("rich", "wealthy"),
    ("scared", "afraid"),
    ("gift", "present"),
    ("shout", "yell"),
    ("jump", "leap"),
    ("talk", "speak"),
    ("choose", "pick"),
    ("quiet", "silent"),
    ("wrong", "incorrect"),
    ("stone", "rock"),
    ("pretty", "beautiful"),
    ("mistake", "error"),
    ("couch", "sofa"),
    ("shop", "store"),
    ("middle", "center"),
    ("street", "road"),
    ("help", "assist"),
    ("fix", "repair"),
    ("hide", "conceal"),
    ("tale", "story"),
)

# singular -> (plural, three wrong forms)
PLURALS: dict[str, tuple[str, tuple[str, str, str]]] = {
    "child": ("children", ("childs", "childrens", "childes")),
    "mouse": ("mice", ("mousen", "mices", "meese")),
    "man": ("men", ("mans", "mens", "manes")),
    "woman": ("women", ("womans", "womens", "womanes")),
    "tooth": ("teeth", ("tooths", "teeths", "toothes")),
    "foot": ("feet", ("footen", "feets", "footes")),
    "goose": ("geese", ("gooses", "geeses", "goosen")),
    "ox": ("oxen", ("oxes", "oxs", "oxens")),
    "sheep": ("sheep", ("sheeps", "sheepes", "shoop")),
    "leaf": ("leaves", ("leafen", "leafes", "leavies")),
    "knife": ("knives", ("knifes", "knifs", "knivs")),
    "wife": ("wives", ("wifes", "wifs", "wivs")),
    "wolf": ("wolves", ("wolfs", "wolfes", "wolvs")),
    "half": ("halves", ("halfen", "halfes", "halvs")),
    "life": ("lives", ("lifen", "lifs", "livs")),
    "shelf": ("shelves", ("shelfs", "shelfes", "shelvs")),
    "loaf": ("loaves", ("loafs", "loafes", "loavs")),
    "thief": ("thieves", ("thiefs", "thiefes", "thievs")),
    "box": ("boxes", ("boxs", "boxies", "boxxes")),
    "fox": ("foxes", ("foxs", "foxies", "foxxes")),
    "church": ("churches", ("churchs", "churchies", "churchen")),
    "dish": ("dishes", ("dishs", "dishies", "dishen")),
    "watch": ("watches", ("watchs", "watchies", "watchen")),
    "glass": ("glasses", ("glasss", "glassies", "glassen")),
    "dress": ("dresses", ("dresss", "dressies", "dressen")),
    "city": ("cities", ("citys", "cityes", "citis")),
    "baby": ("babies", ("babys", "babyes", "babis")),
    "party": ("parties", ("partys", "partyes", "partis")),
    "story": ("stories", ("storys", "storyes", "storis")),
    "lady": ("ladies", ("ladys", "ladyes", "ladis")),
    "country": ("countries", ("countrys", "countryes", "countris")),
    "berry": ("berries", ("berrys", "berryes", "berris")),
    "day": ("days", ("daies", "dayes", "dayz")),
    "boy": ("boys", ("boies", "boyes", "boyz")),
    "key": ("keys", ("keies", "keyes", "keyz")),
    "toy": ("toys", ("toies", "toyes", "toyz")),
    "tomato": ("tomatoes", ("tomatos", "tomatoies", "tomatoe")),
    "potato": ("potatoes", ("potatos", "potatoies", "potatoe")),
    "cat": ("cats", ("cates", "catz", "caten")),
    "book": ("books", ("bookes", "bookz", "booken")),
    "tree": ("trees", ("treees", "treez", "treen")),
    "chair": ("chairs", ("chaires", "chairz", "chairen")),
}

# verb -> (simple past, three wrong forms); verbs with two accepted pasts are left out
PAST_TENSES: dict[str, tuple[str, tuple[str, str, str]]] = {
    "go": ("went", ("goed", "wented", "goned")),
    "eat": ("ate", ("eated", "eatted", "ated")),
    "see": ("saw", ("seed", "seen", "sawed")),
    "run": ("ran", ("runned", "runed", "ranned")),
    "swim": ("swam", ("swimmed", "swimed", "swammed")),
    "sing": ("sang", ("singed", "sanged", "singged")),
    "drink": ("drank", ("drinked", "dranked", "drinkt")),
    "write": ("wrote", ("writed", "wroted", "writted")),
    "drive": ("drove", ("drived", "droved", "driven")),
    "ride": ("rode", ("rided", "roded", "ridden")),
    "speak": ("spoke", ("speaked", "spoked", "spoken")),
    "break": ("broke", ("breaked", "broked", "broken")),
    "take": ("took", ("taked", "tooked", "taken")),
    "give": ("gave", ("gived", "gaved", "given")),
    "come": ("came", ("comed", "camed", "commed")),
    "know": ("knew", ("knowed", "knewed", "known")),
    "grow": ("grew", ("growed", "grewed", "grown")),
    "throw": ("threw", ("throwed", "threwed", "thrown")),
    "fly": ("flew", ("flyed", "flewed", "flown")),
    "draw": ("drew", ("drawed", "drewed", "drawn")),
    "begin": ("began", ("beginned", "begun", "beganed")),
    "sit": ("sat", ("sitted", "sited", "satted")),
    "stand": ("stood", ("standed", "stooded", "standen")),
    "find": ("found", ("finded", "fand", "findt")),
    "think": ("thought", ("thinked", "thunk", "thoughted")),
    "buy": ("bought", ("buyed", "boughted", "buyt")),
    "bring": ("brought", ("bringed", "brang", "broughted")),
    "teach": ("taught", ("teached", "taughted", "tought")),
    "catch": ("caught", ("catched", "caughted", "cotched")),
    "sleep": ("slept", ("sleeped", "slepted", "sleept")),
    "keep": ("kept", ("keeped", "kepted", "keept")),
    "feel": ("felt", ("feeled", "felted", "feelt")),
    "meet": ("met", ("meeted", "metted", "meat")),
    "sell": ("sold", ("selled", "solded", "sellt")),
    "tell": ("told", ("telled", "tolded", "tellt")),
    "win": ("won", ("winned", "wonned", "wan")),
    "forget": ("forgot", ("forgetted", "forgotted", "forgeted")),
    "wear": ("wore", ("weared", "wored", "worn")),
    "choose": ("chose", ("choosed", "chosed", "chosen")),
    "freeze": ("froze", ("freezed", "frozed", "frozen")),
    "steal": ("stole", ("stealed", "stoled", "stolen")),
}

# animal -> the usual name of its young
YOUNG: dict[str, str] = {
    "cat": "kitten",
    "dog": "puppy",
    "cow": "calf",
    "elephant": "calf",
    "whale": "calf",
    "sheep": "lamb",
    "horse": "foal",
    "pig": "piglet",
    "duck": "duckling",
    "goose": "gosling",
    "swan": "cygnet",
    "frog": "tadpole",
    "kangaroo": "joey",
    "bear": "cub",
    "lion": "cub",
    "tiger": "cub",
    "goat": "kid",
    "owl": "owlet",
    "eagle": "eaglet",
    "butterfly": "caterpillar",
}

# animal -> the usual word for its sound (no "hiss": cats hiss too; no wolf: dogs howl too)
SOUNDS: dict[str, str] = {
    "dog": "bark",
    "cat": "meow",
    "cow": "moo",
    "sheep": "baa",
    "duck": "quack",
    "pig": "oink",
    "horse": "neigh",
    "lion": "roar",
    "owl": "hoot",
    "bee": "buzz",
    "frog": "croak",
    "donkey": "bray",
    "mouse": "squeak",
    "rooster": "crow",
}

# category -> (how a member is named in a sentence, members); no word is in two categories
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fruit": (
        "a fruit",
        ("apple", "banana", "pear", "grape", "mango", "pineapple", "strawberry", "watermelon", "coconut"),
    ),
    "vegetable": (
        "a vegetable",
        ("carrot", "potato", "onion", "cabbage", "broccoli", "spinach", "lettuce", "celery", "cauliflower"),
    ),
    "color": ("a color", ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white")),
    "musical instrument": (
        "a musical instrument",
        ("piano", "guitar", "violin", "drum", "flute", "trumpet", "harp", "cello", "clarinet"),
    ),
    "vehicle": (
        "a vehicle",
        ("car", "bus", "truck", "bicycle", "train", "motorcycle", "tractor", "taxi", "ambulance"),
    ),
    "furniture": (
        "a piece of furniture",
        ("chair", "table", "sofa", "bed", "desk", "wardrobe", "bookshelf", "stool", "cupboard"),
    ),
    "body part": (
        "a part of the body",
        ("arm", "leg", "elbow", "knee", "shoulder", "ear", "nose", "finger", "ankle"),
    ),
    "tool": (
        "a tool",
        ("hammer", "screwdriver", "wrench", "saw", "drill", "chisel", "pliers", "shovel", "axe"),
    ),
    "clothing": (
        "a piece of clothing",
        ("shirt", "jacket", "dress", "skirt", "sock", "coat", "sweater", "scarf", "jeans"),
    ),
    "bird": (
        "a bird",
        ("sparrow", "eagle", "robin", "pigeon", "owl", "parrot", "penguin", "swan", "flamingo"),
    ),
    "fish": (
        "a fish",
        ("trout", "tuna", "cod", "shark", "goldfish", "carp", "herring", "sardine", "catfish"),
    ),
    "sport": (
        "a sport",
        ("football", "tennis", "basketball", "golf", "baseball", "hockey", "volleyball", "rugby", "boxing"),
    ),
    "drink": (
        "a drink",
        ("water", "milk", "juice", "tea", "lemonade", "soda", "smoothie", "milkshake", "cider"),
    ),
    "shape": (
        "a shape",
        ("circle", "rectangle", "oval", "hexagon", "pentagon", "octagon", "cube", "sphere", "cylinder"),
    ),
}


def _both_ways(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a, b in pairs:
        for key, value in ((a, b), (b, a)):
            if key in out:
                raise ValueError(f"{key!r} is in two pairs")
            out[key] = value
    return out


ANTONYMS = _both_ways(ANTONYM_PAIRS)
OPPOSITE_DIRECTIONS = _both_ways(DIRECTION_PAIRS)
SYNONYMS = _both_ways(SYNONYM_PAIRS)
CATEGORY_OF: dict[str, str] = {m: cat for cat, (_, members) in CATEGORIES.items() for m in members}
if len(CATEGORY_OF) != sum(len(members) for _, members in CATEGORIES.values()):
    raise ValueError("a word is in two categories")

# relation -> {key: correct value}: the items' tags are [relation, key]; the category
# relations ("category", "not_category") are checked against CATEGORIES instead
LOOKUP: dict[str, dict[str, str]] = {
    "antonym": ANTONYMS,
    "opposite_direction": OPPOSITE_DIRECTIONS,
    "turn_around": {a: b for a, b in OPPOSITE_DIRECTIONS.items() if any(a in p for p in COMPASS_PAIRS)},
    "synonym": SYNONYMS,
    "plural": {word: plural for word, (plural, _) in PLURALS.items()},
    "past_tense": {verb: past for verb, (past, _) in PAST_TENSES.items()},
    "young": YOUNG,
    "sound": SOUNDS,
    "category_of": CATEGORY_OF,
}
