import json
import subprocess
import sys
from pathlib import Path

import pytest

from modules import clip_tokenizer
from modules.clip_tokenizer import PAD_CLIP_L, PAD_OPEN_CLIP

ROOT = Path(__file__).resolve().parents[2]

# ids cross-checked once against open_clip's own SimpleTokenizer.encode
KNOWN_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "(masterpiece:1.2), <lora:x:0.8> café 日本 😀 don't\nnew": [
        49406, 263, 12066, 281, 272, 269, 273, 2361, 283, 2179, 320, 281, 343, 281, 271, 269, 279, 285,
        15304, 39121, 19277, 361, 7334, 847, 713, 686, 49407,
    ],
    "A  BIG [dog|cat] AND_THEN 1234.5": [
        49406, 320, 1205, 314, 1929, 347, 2368, 316, 537, 318, 1594, 272, 273, 274, 275, 269, 276, 49407,
    ],
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def clip_l_tok(cache_dir):
    return clip_tokenizer.load_tokenizer(cache_dir, PAD_CLIP_L)


@pytest.fixture(scope="module")
def open_clip_tok(cache_dir):
    return clip_tokenizer.load_tokenizer(cache_dir, PAD_OPEN_CLIP)


@pytest.mark.parametrize("prompt", list(KNOWN_IDS))
def test_ids_match_openai_clip(clip_l_tok, open_clip_tok, prompt):
    assert clip_l_tok(prompt).input_ids == KNOWN_IDS[prompt]
    assert open_clip_tok(prompt).input_ids == KNOWN_IDS[prompt]


def test_vocabulary_and_special_tokens(clip_l_tok):
    assert len(clip_l_tok) == 49408
    assert clip_l_tok.bos_token_id == 49406
    assert clip_l_tok.eos_token_id == 49407
    assert clip_l_tok.model_max_length == 77


def test_clip_l_pads_with_endoftext(clip_l_tok):
    ids = clip_l_tok("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[:7] == KNOWN_IDS["a photo of a cat"]
    assert ids[7:] == [49407] * 70


def test_open_clip_pads_with_exclamation_mark(open_clip_tok):
    assert open_clip_tok.pad_token == "!"
    ids = open_clip_tok("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids[:7] == KNOWN_IDS["a photo of a cat"]
    assert ids[7:] == [0] * 70


def test_long_prompt_truncates_to_77_ending_in_eos(clip_l_tok):
    ids = clip_l_tok("cat " * 100, truncation=True, max_length=clip_l_tok.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == 49406 and ids[-1] == 49407 and ids[1:-1] == [2368] * 75


def test_folder_contents(cache_dir, clip_l_tok, open_clip_tok):
    folder = cache_dir / "clip-tokenizer-exclamation"
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert len(merges) == 1 + 48894
    assert merges[1] == "i n"
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_max_length"] == 77 and config["pad_token"] == "!"
    special = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special["pad_token"] == "!" and special["bos_token"] == "<|startoftext|>"
    assert sorted(p.name for p in cache_dir.iterdir()) == ["clip-tokenizer-endoftext", "clip-tokenizer-exclamation"]


def test_ensure_is_idempotent(tmp_path):
    dest = tmp_path / "tok"
    assert clip_tokenizer.ensure_tokenizer_dir(dest, PAD_CLIP_L) == dest
    vocab = dest / "vocab.json"
    vocab.write_text("{}")  # a second call must not rebuild a complete folder
    clip_tokenizer.ensure_tokenizer_dir(dest, PAD_CLIP_L)
    assert vocab.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no staging folder left behind


def test_incomplete_folder_is_rebuilt(tmp_path):
    dest = tmp_path / "tok"
    dest.mkdir()
    (dest / "vocab.json").write_text("{}")
    clip_tokenizer.ensure_tokenizer_dir(dest, PAD_OPEN_CLIP)
    assert len(json.loads((dest / "vocab.json").read_text(encoding="utf-8"))) == 49408
    assert (dest / "merges.txt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]


def test_unknown_pad_token_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported CLIP pad token '<pad>'"):
        clip_tokenizer.load_tokenizer(tmp_path, "<pad>")


def test_missing_open_clip_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_tokenizer.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="open-clip-torch is not installed"):
        clip_tokenizer.ensure_tokenizer_dir(tmp_path / "tok", PAD_CLIP_L)
    assert not (tmp_path / "tok").exists()
    assert list(tmp_path.iterdir()) == []


def test_building_does_not_import_open_clip(tmp_path):
    # importing open_clip needs torchvision; a fresh interpreter shows whether the module got imported
    code = (
        "import sys; from pathlib import Path; from modules import clip_tokenizer as c; "
        "c.ensure_tokenizer_dir(Path(sys.argv[1]), '!'); print('open_clip' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "tok")], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
    assert (tmp_path / "tok" / "vocab.json").is_file()
