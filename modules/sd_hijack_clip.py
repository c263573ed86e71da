"""A1111's modules.sd_hijack_clip: how a prompt is counted in 75-token CLIP chunks (the counter and get_prompt_lengths).

A1111's FrozenCLIPEmbedderWithCustomWords* classes wrap LDM's CLIP modules; Atelier encodes prompts with its own
prompt_encoding over transformers' CLIP, so those classes are not provided: an import names what is missing.
"""
from __future__ import annotations

import functools
from pathlib import Path

from modules import clip_tokenizer
from modules.prompt_encoding import CHUNK, tokenize_weighted

_LDM_ONLY = ("FrozenCLIPEmbedderWithCustomWordsBase", "FrozenCLIPEmbedderWithCustomWords",
             "FrozenCLIPEmbedderForSDXLWithCustomWords", "PromptChunk", "PromptChunkFix")


@functools.lru_cache(maxsize=1)
def counting_tokenizer():
    """CLIP-L's tokenizer (A1111 counts with the first text encoder's); built offline once, no model needed."""
    from modules import (
        initialize,  # initialize imports processing, which imports this module
    )

    return clip_tokenizer.load_tokenizer(Path(initialize.cache_dir()), clip_tokenizer.PAD_CLIP_L)


def prompt_lengths(text: str) -> tuple[int, int]:
    """(tokens of `text`, tokens its 75-token chunks hold): A1111's process_texts count and target length."""
    tokenizer = counting_tokenizer()
    chunks = tokenize_weighted(tokenizer, text or "")
    count = sum(1 for chunk in chunks for token in chunk.ids if token != tokenizer.pad_token_id)
    return count, max(len(chunks), 1) * CHUNK


def __getattr__(name):
    if name in _LDM_ONLY:
        raise ImportError(f"modules.sd_hijack_clip.{name} is A1111's wrapper of LDM's CLIP module; Atelier encodes "
                          "prompts with transformers' CLIP (modules.prompt_encoding), so there is no such class")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
