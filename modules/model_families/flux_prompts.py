"""Flux.1 and Chroma prompt encoding. Flux.1: T5's token sequence is the context, CLIP-L's pooled output the vector
(as FluxPipeline). Chroma: T5 alone, run with its padding masked, and the transformer sees the prompt's tokens and one
padding token (ChromaPipeline's mask).

T5 has no 75-token chunks: a prompt is one sequence of up to `max_length` tokens, longer ones are cut with a warning.
A1111's emphasis `(word:1.2)` is not applied yet (T5's embeddings do not scale the way CLIP's do): brackets reach
the tokenizers as plain text.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from modules.prompt_encoding import Conditioning
from modules.sd_samplers_common import InterruptedException

log = logging.getLogger(__name__)
T5_MAX_LENGTH = 512  # FluxPipeline's max_sequence_length
CLIP_MAX_LENGTH = 77


def t5_encode(t5, tokenizer, texts: list[str], max_length: int, device, masked: bool = False):
    """T5's last hidden state [B, max_length, D] of the padded prompts, and the tokenizer's attention mask [B, T];
    `masked`: T5 itself skips the padding (Chroma). Prompts beyond max_length are cut with a warning."""
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                       return_overflowing_tokens=False, return_length=False, return_tensors="pt")
    if tokenizer(texts, padding="longest", return_tensors="pt").input_ids.shape[1] > max_length:
        log.warning("Prompt longer than %d T5 tokens: the end was cut off", max_length)
    mask = tokens.attention_mask.to(device)
    with torch.inference_mode():
        context = t5(tokens.input_ids.to(device), attention_mask=mask if masked else None,
                     output_hidden_states=False)[0].float()
    return context, mask


class FluxPromptEncoder:
    """Same interface as prompt_encoding.PromptEncoder (get_learned_conditioning, encode, infotext_params)."""

    def __init__(self, model, should_stop: Callable[[], bool] | None = None, max_length: int = T5_MAX_LENGTH):
        self.model = model
        self.should_stop = should_stop
        self.max_length = max_length
        self.used_embeddings: dict = {}  # textual inversion does not apply to T5

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedException
        model = self.model
        clip = model.text_encoders["text_encoder"]
        context, _ = t5_encode(model.text_encoders["text_encoder_2"], model.tokenizers["tokenizer_2"], texts,
                               self.max_length, model.device)
        clip_ids = model.tokenizers["tokenizer"](texts, padding="max_length", max_length=CLIP_MAX_LENGTH,
                                                 truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            pooled = clip(clip_ids.to(model.device), output_hidden_states=False).pooler_output.float()
        return [Conditioning(context[i:i + 1], pooled[i:i + 1]) for i in range(len(texts))]

    def encode(self, prompts: list[str], is_negative: bool = False) -> Conditioning:
        unique = {p: self.get_learned_conditioning([p], is_negative)[0] for p in dict.fromkeys(prompts)}
        return Conditioning.stack([unique[p] for p in prompts])

    def infotext_params(self, texts: list[str], ti_hashes: bool = True) -> dict[str, str]:
        return {}


class ChromaPromptEncoder(FluxPromptEncoder):
    """T5 only; each conditioning carries the transformer's text mask: the prompt's tokens and the first padding."""

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedException
        model = self.model
        context, mask = t5_encode(model.text_encoders["text_encoder"], model.tokenizers["tokenizer"], texts,
                                  self.max_length, model.device, masked=True)
        positions = torch.arange(mask.shape[1], device=mask.device)[None]
        keep = (positions <= mask.sum(dim=1, keepdim=True)).float()
        return [Conditioning(context[i:i + 1], None, keep[i:i + 1]) for i in range(len(texts))]
