"""Prompt text -> UNet conditioning, as A1111 builds it: 75-token chunks, emphasis, clip skip, SDXL pooled output."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modules.prompt_parser import parse_prompt_attention

CHUNK = 75  # tokens per chunk, between the start and end tokens
COMMA_BACKTRACK = 20


@dataclass
class Conditioning:
    """Cross-attention context [B, T, D] and, for SDXL, the pooled text embedding [B, P]."""

    context: torch.Tensor
    pooled: torch.Tensor | None = None

    def batch(self) -> int:
        return self.context.shape[0]


@dataclass
class TokenChunk:
    ids: list[int]
    weights: list[float]


def tokenize_weighted(tokenizer, prompt: str, emphasis: str = "Original") -> list[TokenChunk]:
    """Split a prompt into chunks of 75 weighted tokens; BREAK and overflow start a new chunk (A1111 rules).

    Emphasis "None" reads brackets as plain text; "Ignore" parses them but keeps every weight at 1.
    """
    parsed = [[prompt, 1.0]] if emphasis == "None" else parse_prompt_attention(prompt)
    if emphasis == "Ignore":
        parsed = [[text, 1.0 if weight != -1 else -1] for text, weight in parsed]
    texts = [text for text, _ in parsed]
    tokenized = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks: list[TokenChunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close_chunk(is_last: bool = False) -> None:
        nonlocal ids, weights, last_comma
        if is_last and not ids and chunks:
            return
        pad = CHUNK - len(ids)
        chunks.append(TokenChunk(ids + [tokenizer.pad_token_id] * pad, weights + [1.0] * pad))
        ids, weights, last_comma = [], [], -1

    for (text, weight), tokens in zip(parsed, tokenized):
        if text == "BREAK" and weight == -1:
            close_chunk()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                # Keep the words after the last comma together in the next chunk.
                cut = last_comma + 1
                carry_ids, carry_w = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close_chunk()
                ids, weights = carry_ids, carry_w
            if len(ids) == CHUNK:
                close_chunk()
            ids.append(token)
            weights.append(weight)
    close_chunk(is_last=True)
    return chunks


class PromptEncoder:
    """Encodes prompts with one model's text encoders."""

    def __init__(self, model, clip_skip: int = 1, emphasis: str = "Original"):
        self.model = model
        self.clip_skip = max(int(clip_skip), 1)
        self.emphasis = emphasis

    def encode(self, prompts: list[str], is_negative: bool = False) -> Conditioning:
        """One conditioning per prompt; identical prompts are encoded once; shorter ones are padded to the longest."""
        unique = {p: self._encode_one(p, is_negative) for p in dict.fromkeys(prompts)}
        conds = [unique[p] for p in prompts]
        longest = max(c.context.shape[1] for c in conds)
        context = torch.cat([_pad_tokens(c.context, longest) for c in conds])
        pooled = torch.cat([c.pooled for c in conds]) if conds[0].pooled is not None else None
        return Conditioning(context, pooled)

    def _encode_one(self, prompt: str, is_negative: bool) -> Conditioning:
        family = self.model.family.name
        if family == "xl_base":
            cond_l = self._encode_with(prompt, "text_encoder", "tokenizer", layer=-2)
            cond_g = self._encode_with(prompt, "text_encoder_2", "tokenizer_2", layer=-2)
            cond = Conditioning(torch.cat([cond_l.context, cond_g.context], dim=-1), cond_g.pooled)
        elif family == "xl_refiner":
            cond = self._encode_with(prompt, "text_encoder_2", "tokenizer_2", layer=-2)
        elif family == "v1":
            cond = self._encode_with(prompt, "text_encoder", "tokenizer", layer=-self.clip_skip, final_norm=True)
        else:  # SD2: the encoder already ends at the penultimate block
            cond = self._encode_with(prompt, "text_encoder", "tokenizer", layer=-1, final_norm=True)
        if is_negative and prompt == "" and self.model.family.is_sdxl:
            # SDXL's empty negative prompt is a zero embedding, not the embedding of "".
            cond = Conditioning(torch.zeros_like(cond.context), None if cond.pooled is None else torch.zeros_like(cond.pooled))
        return cond

    def _encode_with(self, prompt: str, encoder_name: str, tokenizer_name: str, layer: int, final_norm: bool = False) -> Conditioning:
        encoder = self.model.text_encoders[encoder_name]
        tokenizer = self.model.tokenizers[tokenizer_name]
        device = self.model.device
        chunks = tokenize_weighted(tokenizer, prompt, self.emphasis)
        ids = torch.tensor([[tokenizer.bos_token_id] + c.ids + [tokenizer.eos_token_id] for c in chunks], device=device)
        weights = torch.tensor([[1.0] + c.weights + [1.0] for c in chunks], device=device)
        out = encoder(ids, output_hidden_states=True)
        hidden = out.hidden_states[layer] if layer != -1 or not final_norm else out.last_hidden_state
        if final_norm and layer != -1:
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            hidden = norm(hidden)
        hidden = self._apply_emphasis(hidden.float(), weights)
        pooled = out.text_embeds[:1].float() if hasattr(out, "text_embeds") and out.text_embeds is not None else None
        return Conditioning(hidden.reshape(1, -1, hidden.shape[-1]), pooled)

    def _apply_emphasis(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if bool((weights == 1).all()):
            return z
        original_mean = z.mean()
        z = z * weights.unsqueeze(-1)
        if self.emphasis == "Original":
            z = z * (original_mean / z.mean())
        return z


def _pad_tokens(context: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last token vector to reach `length` tokens (A1111's way of batching prompts of different lengths)."""
    missing = length - context.shape[1]
    return context if missing == 0 else torch.cat([context, context[:, -1:].expand(-1, missing, -1)], dim=1)
