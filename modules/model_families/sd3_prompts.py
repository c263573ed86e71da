"""SD 3.5 prompt encoding as StableDiffusion3Pipeline does it: CLIP-L's and CLIP-G's penultimate hidden states side by
side, zero-padded to T5's width, then T5's tokens after them; the pooled vector is both CLIPs' projected outputs.

CLIP's 77 tokens are one window (no 75-token chunks), T5's 256 tokens likewise, longer prompts cut with a warning;
A1111's emphasis is not applied (brackets reach the tokenizers as plain text), as for Flux.1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modules.model_families.flux_prompts import CLIP_MAX_LENGTH, FluxPromptEncoder, t5_encode
from modules.prompt_encoding import Conditioning
from modules.sd_samplers_common import InterruptedException

T5_MAX_LENGTH = 256  # StableDiffusion3Pipeline's max_sequence_length


class SD3PromptEncoder(FluxPromptEncoder):
    def __init__(self, model, should_stop=None, max_length: int = T5_MAX_LENGTH):
        super().__init__(model, should_stop=should_stop, max_length=max_length)

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        if self.should_stop is not None and self.should_stop():
            raise InterruptedException
        model = self.model
        hidden, pooled = [], []
        with torch.inference_mode():
            for encoder, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
                ids = model.tokenizers[tokenizer](texts, padding="max_length", max_length=CLIP_MAX_LENGTH,
                                                  truncation=True, return_tensors="pt").input_ids
                out = model.text_encoders[encoder](ids.to(model.device), output_hidden_states=True)
                pooled.append(out[0].float())
                hidden.append(out.hidden_states[-2].float())
        t5, _ = t5_encode(model.text_encoders["text_encoder_3"], model.tokenizers["tokenizer_3"], texts,
                          self.max_length, model.device)
        clip = torch.cat(hidden, dim=-1)
        context = torch.cat([F.pad(clip, (0, t5.shape[-1] - clip.shape[-1])), t5], dim=-2)
        vector = torch.cat(pooled, dim=-1)
        return [Conditioning(context[i:i + 1], vector[i:i + 1]) for i in range(len(texts))]
