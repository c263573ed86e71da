"""Prompt encoding with a Qwen3 text encoder as ZImagePipeline does it: the prompt as one user turn of Qwen's chat
template (with the generation prompt), padded to 512 tokens, and the second-to-last hidden state; the conditioning
keeps the attention mask so the transformer sees the prompt's tokens only.

No 75-token chunks: longer prompts are cut at 512 tokens with a warning; A1111's emphasis is not applied (brackets
reach the tokenizer as plain text), as for Flux.1.
"""
from __future__ import annotations

import logging

import torch

from modules.model_families.flux_prompts import FluxPromptEncoder
from modules.prompt_encoding import Conditioning
from modules.sd_samplers_common import InterruptedException

log = logging.getLogger(__name__)
MAX_LENGTH = 512  # ZImagePipeline's max_sequence_length


def chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=True)


class ZImagePromptEncoder(FluxPromptEncoder):
    def __init__(self, model, should_stop=None, max_length: int = MAX_LENGTH):
        super().__init__(model, should_stop=should_stop, max_length=max_length)

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedException
        model = self.model
        tokenizer = model.tokenizers["tokenizer"]
        prompts = [chat_prompt(tokenizer, t) for t in texts]
        tokens = tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                           return_tensors="pt")
        if max(len(ids) for ids in tokenizer(prompts).input_ids) > self.max_length:
            log.warning("Prompt longer than %d Qwen tokens: the end was cut off", self.max_length)
        mask = tokens.attention_mask.to(model.device)
        with torch.inference_mode():
            hidden = model.text_encoders["text_encoder"](input_ids=tokens.input_ids.to(model.device),
                                                         attention_mask=mask.bool(),
                                                         output_hidden_states=True).hidden_states[-2].float()
        return [Conditioning(hidden[i:i + 1], None, mask[i:i + 1].float()) for i in range(len(texts))]
