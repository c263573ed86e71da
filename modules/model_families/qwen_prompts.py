"""Prompt encoding with Qwen text encoders. Z-Image (ZImagePipeline): the prompt as one user turn of Qwen3's chat
template (with the generation prompt), padded to 512 tokens, and the second-to-last hidden state. Qwen-Image
(QwenImagePipeline): the prompt in its own template (a system turn asking to describe the image), at most 1024
tokens after the template's first 34, Qwen2.5-VL's last hidden state with those 34 dropped. The conditioning keeps
the attention mask so the transformer sees the prompt's tokens only.

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


QWEN_IMAGE_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                       "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
                       "<|im_end|>\n<|im_start|>assistant\n")
QWEN_IMAGE_DROP = 34  # QwenImagePipeline's prompt_template_encode_start_idx: the template's tokens before the prompt
QWEN_IMAGE_MAX_LENGTH = 1024  # its tokenizer_max_length


class QwenImagePromptEncoder(FluxPromptEncoder):
    def __init__(self, model, should_stop=None, max_length: int = QWEN_IMAGE_MAX_LENGTH):
        super().__init__(model, should_stop=should_stop, max_length=max_length)

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedException
        model = self.model
        tokenizer = model.tokenizers["tokenizer"]
        prompts = [QWEN_IMAGE_TEMPLATE.format(t) for t in texts]
        total = self.max_length + QWEN_IMAGE_DROP
        tokens = tokenizer(prompts, padding="max_length", max_length=total, truncation=True, return_tensors="pt")
        if max(len(ids) for ids in tokenizer(prompts).input_ids) > total:
            log.warning("Prompt longer than %d Qwen tokens: the end was cut off", self.max_length)
        mask = tokens.attention_mask.to(model.device)
        with torch.inference_mode():
            hidden = model.text_encoders["text_encoder"](input_ids=tokens.input_ids.to(model.device),
                                                         attention_mask=mask,
                                                         output_hidden_states=True).hidden_states[-1].float()
        hidden, mask = hidden[:, QWEN_IMAGE_DROP:], mask[:, QWEN_IMAGE_DROP:]
        return [Conditioning(hidden[i:i + 1], None, mask[i:i + 1].float()) for i in range(len(texts))]
