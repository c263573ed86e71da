"""Prompt -> weighted token chunks, as A1111 splits them (the full prompt language is issue 5's)."""
import pytest

from modules.clip_tokenizer import PAD_CLIP_L, load_tokenizer
from modules.prompt_encoding import CHUNK, tokenize_weighted
from modules.prompt_parser import parse_prompt_attention


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(tmp_path_factory.mktemp("tok"), PAD_CLIP_L)


@pytest.mark.parametrize("text,expected", [
    ("plain", [["plain", 1.0]]),
    ("a (b) c", [["a ", 1.0], ["b", 1.1], [" c", 1.0]]),
    ("(b:1.5) [c]", [["b", 1.5], [" ", 1.0], ["c", 1 / 1.1]]),
    ("\\(literal\\)", [["(literal)", 1.0]]),
    ("((x))", [["x", 1.1 * 1.1]]),
    ("(unclosed", [["unclosed", 1.1]]),
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("key:value", [["key:value", 1.0]]),
])
def test_parse_prompt_attention(text, expected):
    assert parse_prompt_attention(text) == expected


def test_emphasis_weights_land_on_the_words_tokens(tokenizer):
    chunk = tokenize_weighted(tokenizer, "a (cat:1.5) sits")[0]
    cat = tokenizer("cat", add_special_tokens=False)["input_ids"]
    position = chunk.ids.index(cat[0])
    assert chunk.weights[position] == 1.5 and chunk.weights[position - 1] == 1.0 and chunk.weights[position + 1] == 1.0
    assert len(chunk.ids) == CHUNK and chunk.ids[-1] == tokenizer.pad_token_id


def test_long_prompt_makes_two_chunks_and_break_forces_one(tokenizer):
    words = " ".join(["cat"] * 100)
    assert len(tokenize_weighted(tokenizer, words)) == 2
    assert len(tokenize_weighted(tokenizer, "cat BREAK dog")) == 2
    assert len(tokenize_weighted(tokenizer, "cat dog")) == 1


def test_emphasis_none_reads_brackets_as_text_and_ignore_drops_weights(tokenizer):
    none = tokenize_weighted(tokenizer, "(cat:1.5)", "None")[0]
    assert set(none.weights) == {1.0}
    assert tokenizer("(", add_special_tokens=False)["input_ids"][0] in none.ids
    ignore = tokenize_weighted(tokenizer, "(cat:1.5)", "Ignore")[0]
    assert set(ignore.weights) == {1.0}
    assert tokenizer("(", add_special_tokens=False)["input_ids"][0] not in ignore.ids
