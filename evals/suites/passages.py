"""Short generated passages for the ``reading`` suite, and the small vocabularies they use.

A passage is 3 sentences filled from the tables below; each comes with questions whose answer
is stated in it once. Every question names the *kind* of its answer (a town, a day, a color,
...), so the suite can draw wrong choices of the same kind, and lists the other entities of
that kind the passage mentions (the other person, the other town): they make the best wrong
choices, since only reading tells them apart.

The arithmetic suite's word problems borrow :data:`NAMES` and :data:`THINGS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack",
    "Kate", "Leo", "Maria", "Noah", "Olivia", "Peter", "Rosa", "Sam", "Tara", "Victor",
    "Wendy", "Adam", "Bella", "Carlos", "Daisy", "Ethan", "Fiona", "George", "Hannah", "Ivan",
    "Julia", "Kevin", "Lily", "Martin", "Nina", "Oscar", "Paula", "Ruby", "Simon", "Tom",
)  # fmt: skip
TOWNS: tuple[str, ...] = (
    "Riverton", "Oakdale", "Millbrook", "Stonebridge", "Fairview", "Brookfield", "Lakeside",
    "Greenwood", "Hillcrest", "Maplewood", "Springfield", "Westport", "Northfield", "Ashford",
    "Bayview", "Cedarville", "Elmstead", "Foxton", "Glenmore", "Harborne",
)  # fmt: skip
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black")
ANIMAL_COLORS: tuple[str, ...] = ("black", "white", "brown", "gray", "golden")
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
)  # fmt: skip
# plural objects bought at a market
GOODS: tuple[str, ...] = ("apples", "pears", "cups", "plates", "candles", "balloons", "pencils", "towels")
FOODS: tuple[str, ...] = ("sandwich", "apple", "banana", "muffin", "pie", "cookie", "pear", "bagel", "orange")
PETS: tuple[str, ...] = ("dog", "cat", "rabbit", "parrot", "hamster", "turtle", "goat", "pony")
PET_NAMES: tuple[str, ...] = (
    "Biscuit", "Max", "Luna", "Pepper", "Shadow", "Coco", "Buddy", "Daisy", "Whiskers", "Milo",
    "Ginger", "Rocky",
)  # fmt: skip
VEHICLES: tuple[str, ...] = ("train", "bus", "ferry", "plane", "tram")
TOPICS: tuple[str, ...] = ("birds", "history", "space", "cooking", "trees", "music", "castles", "the ocean")
JOBS: tuple[str, ...] = (
    "teacher", "doctor", "baker", "nurse", "pilot", "farmer", "painter", "engineer", "cook",
    "driver", "gardener", "librarian",
)  # fmt: skip
CLOTHES: tuple[str, ...] = ("coat", "hat", "jacket", "scarf", "sweater", "cap")
GIFTS: tuple[str, ...] = ("vase", "lamp", "clock", "teapot", "bowl", "mug", "box", "frame")
SHELF_THINGS: tuple[str, ...] = ("books", "plants", "photos", "candles", "shells", "stones")
FLOWERS: tuple[str, ...] = ("roses", "tulips", "sunflowers", "daisies", "lilies", "poppies")
STREETS: tuple[str, ...] = ("Oak", "Elm", "Maple", "Pine", "Cedar", "Birch", "Willow", "Chestnut")
# countable things in word problems (plural)
THINGS: tuple[str, ...] = ("apples", "pencils", "stickers", "cookies", "marbles", "cards", "stamps", "shells")

# answer kind -> every value of that kind (where wrong choices are drawn from)
KINDS: dict[str, tuple[str, ...]] = {
    "name": NAMES,
    "town": TOWNS,
    "day": DAYS,
    "color": COLORS,
    "animal_color": ANIMAL_COLORS,
    "number": NUMBER_WORDS[2:],
    "hour": tuple(f"{w} o'clock" for w in NUMBER_WORDS[5:11]),
    "goods": GOODS,
    "food": FOODS,
    "pet": PETS,
    "pet_name": PET_NAMES,
    "vehicle": VEHICLES,
    "topic": TOPICS,
    "job": JOBS,
    "gift": GIFTS,
    "shelf_thing": SHELF_THINGS,
    "flower": FLOWERS,
    "street": STREETS,
}


def article(word: str) -> str:
    """``a`` or ``an`` for the word (enough for these tables: no "hour", no "uniform")."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


@dataclass(frozen=True)
class Question:
    """One question on a passage: its text, the answer, its kind and the passage's other
    entities of that kind (always wrong here)."""

    text: str
    answer: str
    kind: str
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passage:
    template: str
    text: str
    questions: tuple[Question, ...]


def _market(rng: random.Random) -> Passage:
    a, b = rng.sample(NAMES, 2)
    town, day, goods, color, food = (rng.choice(t) for t in (TOWNS, DAYS, GOODS, COLORS, FOODS))
    n = NUMBER_WORDS[rng.randint(2, 12)]
    text = (
        f"{a} lives in {town}. On {day}, {a} went to the market and bought {n} {color} {goods}. "
        f"At the market, {a} met {b}, who bought {article(food)}."
    )
    return Passage(
        "market",
        text,
        (
            Question(f"Where does {a} live?", town, "town"),
            Question(f"On which day did {a} go to the market?", day, "day"),
            Question(f"How many {goods} did {a} buy?", n, "number"),
            Question(f"What color were the {goods} that {a} bought?", color, "color"),
            Question(f"What did {a} buy at the market?", goods, "goods"),
            Question(f"Who did {a} meet at the market?", b, "name", (a,)),
            Question(f"What did {b} buy?", food, "food"),
        ),
    )


def _pet(rng: random.Random) -> Passage:
    a = rng.choice(NAMES)
    pet, pet_name, color, day, town = (rng.choice(t) for t in (PETS, PET_NAMES, ANIMAL_COLORS, DAYS, TOWNS))
    n = NUMBER_WORDS[rng.randint(2, 12)]
    text = (
        f"{a} has a {pet} named {pet_name}. The {pet} is {color} and {n} years old. "
        f"Every {day}, {a} takes {pet_name} to the park in {town}."
    )
    return Passage(
        "pet",
        text,
        (
            Question(f"What kind of animal does {a} have?", pet, "pet"),
            Question(f"What is the name of {a}'s {pet}?", pet_name, "pet_name"),
            Question(f"How old is {pet_name}?", n, "number"),
            Question(f"What color is {pet_name}?", color, "animal_color"),
            Question(f"On which day does {a} take {pet_name} to the park?", day, "day"),
            Question("In which town is the park?", town, "town"),
        ),
    )


def _trip(rng: random.Random) -> Passage:
    a, b = rng.sample(NAMES, 2)
    start, end = rng.sample(TOWNS, 2)
    vehicle, topic, food = (rng.choice(t) for t in (VEHICLES, TOPICS, FOODS))
    n = NUMBER_WORDS[rng.randint(2, 9)]
    text = (
        f"{a} and {b} took the {vehicle} from {start} to {end}. The trip took {n} hours. "
        f"On the way, {b} read a book about {topic} and {a} ate {article(food)}."
    )
    return Passage(
        "trip",
        text,
        (
            Question("Which town did the trip start from?", start, "town", (end,)),
            Question("Which town did the trip go to?", end, "town", (start,)),
            Question(f"What did {a} and {b} travel on?", vehicle, "vehicle"),
            Question("How many hours did the trip take?", n, "number"),
            Question(f"What was {b}'s book about?", topic, "topic"),
            Question("Who read a book on the way?", b, "name", (a,)),
            Question(f"What did {a} eat on the way?", food, "food"),
        ),
    )


def _work(rng: random.Random) -> Passage:
    a, b = rng.sample(NAMES, 2)
    job, friend_job = rng.sample(JOBS, 2)
    town, color, cloth = (rng.choice(t) for t in (TOWNS, COLORS, CLOTHES))
    hour = rng.choice(KINDS["hour"])
    text = (
        f"{a} works as {article(job)} in {town}. Every morning, {a} starts work at {hour} "
        f"and wears {article(color)} {cloth}. {a}'s best friend, {b}, is {article(friend_job)}."
    )
    return Passage(
        "work",
        text,
        (
            Question(f"What is {a}'s job?", job, "job", (friend_job,)),
            Question(f"What is {b}'s job?", friend_job, "job", (job,)),
            Question(f"In which town does {a} work?", town, "town"),
            Question(f"At what time does {a} start work?", hour, "hour"),
            Question(f"What color is the {cloth} that {a} wears?", color, "color"),
            Question(f"Who is {a}'s best friend?", b, "name", (a,)),
        ),
    )


def _gift(rng: random.Random) -> Passage:
    a, b = rng.sample(NAMES, 2)
    day, color, gift, things = (rng.choice(t) for t in (DAYS, COLORS, GIFTS, SHELF_THINGS))
    n = NUMBER_WORDS[rng.randint(2, 12)]
    text = (
        f"On {day}, {a} gave {b} {article(color)} {gift} as a present. "
        f"{b} put the {gift} on a shelf next to {n} {things}. The {gift} is still there."
    )
    return Passage(
        "gift",
        text,
        (
            Question("Who gave the present?", a, "name", (b,)),
            Question("Who got the present?", b, "name", (a,)),
            Question(f"What did {a} give {b}?", gift, "gift"),
            Question(f"What color is the {gift}?", color, "color"),
            Question("On which day was the present given?", day, "day"),
            Question(f"How many {things} are next to the {gift}?", n, "number"),
            Question(f"What is next to the {gift} on the shelf?", things, "shelf_thing"),
        ),
    )


def _garden(rng: random.Random) -> Passage:
    a, b = rng.sample(NAMES, 2)
    flowers, street, color, day = (rng.choice(t) for t in (FLOWERS, STREETS, COLORS, DAYS))
    n = NUMBER_WORDS[rng.randint(2, 12)]
    text = (
        f"{a} planted {n} {flowers} in the garden behind the house on {street} Street. "
        f"A month later, the {flowers} had {color} petals. {b}, who lives next door, waters them every {day}."
    )
    return Passage(
        "garden",
        text,
        (
            Question(f"How many {flowers} did {a} plant?", n, "number"),
            Question(f"What did {a} plant in the garden?", flowers, "flower"),
            Question("On which street is the house?", street, "street"),
            Question(f"What color were the petals of the {flowers}?", color, "color"),
            Question(f"Who waters the {flowers}?", b, "name", (a,)),
            Question(f"Who planted the {flowers}?", a, "name", (b,)),
            Question(f"On which day does {b} water the {flowers}?", day, "day"),
        ),
    )


TEMPLATES = (_market, _pet, _trip, _work, _gift, _garden)


def passage(rng: random.Random, index: int) -> Passage:
    """The ``index``-th passage: the templates take turns, the slots are drawn from ``rng``."""
    return TEMPLATES[index % len(TEMPLATES)](rng)
