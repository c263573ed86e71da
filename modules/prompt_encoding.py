"""Prompt text -> UNet conditioning as A1111 builds it: 75-token chunks, emphasis, embeddings, clip skip, SDXL pooling."""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from modules.prompt_parser import parse_prompt_attention
from modules.sd_samplers_common import InterruptedException
from modules.textual_inversion import TokenLookup

CHUNK = 75  # tokens per chunk, between the start and end tokens
COMMA_BACKTRACK = 20
ENCODE_GROUP = 32  # chunks per text-encoder call: normal prompts are one call; an interrupt waits for one group at most
EMBEDDING_PLACEHOLDER = 0  # token id under an embedding's vectors; never the end token, so pooling is unaffected

PromptChunkFix = namedtuple("PromptChunkFix", ["offset", "embedding"])  # embedding vectors start at chunk offset


@dataclass
class Conditioning:
    """Cross-attention context [B, T, D] and, for SDXL, the pooled text embedding [B, P]; `mask` [B, T] (1: attend)
    for models that mask padding tokens (Chroma)."""

    context: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def batch(self) -> int:
        return self.context.shape[0]

    @staticmethod
    def stack(conds: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch; shorter contexts repeat their last token vector (A1111's batching)."""
        if len(conds) == 1:
            return conds[0]
        longest = max(c.context.shape[1] for c in conds)
        context = torch.cat([_pad_tokens(c.context, longest) for c in conds])
        pooled = torch.cat([c.pooled for c in conds]) if conds[0].pooled is not None else None
        mask = None
        if conds[0].mask is not None:  # padded tokens stay masked out
            mask = torch.cat([torch.nn.functional.pad(c.mask, (0, longest - c.mask.shape[1])) for c in conds])
        return Conditioning(context, pooled, mask)


@dataclass
class TokenChunk:
    ids: list[int]
    weights: list[float]
    fixes: list[PromptChunkFix] = field(default_factory=list)


def tokenize_weighted(tokenizer, prompt: str, emphasis: str = "Original", comma_backtrack: int = COMMA_BACKTRACK,
                      embeddings=None) -> list[TokenChunk]:
    """Split a prompt into chunks of 75 weighted tokens; BREAK and overflow start a new chunk (A1111 rules).

    Emphasis "None" reads brackets as plain text; "Ignore" parses them but keeps every weight at 1.
    embeddings: a textual_inversion.TokenLookup; an embedding's vectors replace its name's tokens and never straddle
    two chunks.
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
    fixes: list[PromptChunkFix] = []
    last_comma = -1

    def close_chunk(is_last: bool = False) -> None:
        nonlocal ids, weights, fixes, last_comma
        if is_last and not ids and chunks:
            return
        pad = CHUNK - len(ids)
        chunks.append(TokenChunk(ids + [tokenizer.pad_token_id] * pad, weights + [1.0] * pad, fixes))
        ids, weights, fixes, last_comma = [], [], [], -1

    for (text, weight), tokens in zip(parsed, tokenized):
        if text == "BREAK" and weight == -1:
            close_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            embedding, length = embeddings.find_embedding_at_position(tokens, position) if embeddings else (None, 0)
            if embedding is not None:
                count = embeddings.vector_count(embedding)
                if len(ids) + count > CHUNK:
                    close_chunk()
                fixes.append(PromptChunkFix(len(ids), embedding))
                ids += [EMBEDDING_PLACEHOLDER] * count
                weights += [weight] * count
                position += length
                continue
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK and last_comma != -1 and len(ids) - last_comma <= comma_backtrack:
                # Keep the words after the last comma together in the next chunk.
                cut = last_comma + 1
                carry = (ids[cut:], weights[cut:], [PromptChunkFix(o - cut, e) for o, e in fixes if o >= cut])
                ids, weights, fixes = ids[:cut], weights[:cut], [f for f in fixes if f.offset < cut]
                close_chunk()
                ids, weights, fixes = carry
            if len(ids) == CHUNK:
                close_chunk()
            ids.append(token)
            weights.append(weight)
            position += 1
    close_chunk(is_last=True)
    return chunks


class PromptEncoder:
    """Encodes prompts with one model's text encoders.

    embeddings: name -> textual_inversion.Embedding usable with this model; the ones a prompt used are collected in
    `used_embeddings` (for the infotext's TI hashes).
    """

    def __init__(self, model, clip_skip: int = 1, emphasis: str = "Original", comma_backtrack: int = COMMA_BACKTRACK,
                 embeddings: dict | None = None, should_stop: Callable[[], bool] | None = None):
        self.model = model
        self.should_stop = should_stop  # asked between groups of chunks: True raises InterruptedException
        self.clip_skip = max(int(clip_skip), 1)
        self.emphasis = emphasis
        self.comma_backtrack = comma_backtrack
        self.embeddings = embeddings or {}
        self.used_embeddings: dict = {}
        self._lookups: dict = {}

    def encode(self, prompts: list[str], is_negative: bool = False) -> Conditioning:
        """One conditioning per prompt; identical prompts are encoded once; shorter ones are padded to the longest."""
        unique = {p: self.get_learned_conditioning([p], is_negative)[0] for p in dict.fromkeys(prompts)}
        return Conditioning.stack([unique[p] for p in prompts])

    def get_learned_conditioning(self, texts: list[str], is_negative: bool = False) -> list[Conditioning]:
        """One conditioning (batch 1) per text, encoded together as A1111 encodes the variants of one prompt:
        all get the same chunk count (shorter ones are padded with empty chunks) and emphasis is normalised per chunk
        over the whole batch."""
        family = self.model.family.name
        if family == "xl_base":
            conds_l = self._encode_with(texts, "text_encoder", "tokenizer", layer=-2)
            conds_g = self._encode_with(texts, "text_encoder_2", "tokenizer_2", layer=-2)
            conds = [Conditioning(torch.cat([cl.context, cg.context], dim=-1), cg.pooled)
                     for cl, cg in zip(conds_l, conds_g)]
        elif family == "xl_refiner":
            conds = self._encode_with(texts, "text_encoder_2", "tokenizer_2", layer=-2)
        elif family == "v1":
            conds = self._encode_with(texts, "text_encoder", "tokenizer", layer=-self.clip_skip, final_norm=True)
        else:  # SD2: the encoder already ends at the penultimate block
            conds = self._encode_with(texts, "text_encoder", "tokenizer", layer=-1, final_norm=True)
        if is_negative and self.model.family.is_sdxl and all(text == "" for text in texts):
            # SDXL's empty negative prompt is a zero embedding, not the embedding of "".
            conds = [Conditioning(torch.zeros_like(c.context), None if c.pooled is None else torch.zeros_like(c.pooled))
                     for c in conds]
        return conds

    def infotext_params(self, texts: list[str], ti_hashes: bool = True) -> dict[str, str]:
        """A1111's infotext entries for what was encoded: `TI hashes` of used embeddings, `Emphasis` when not default."""
        params = {}
        hashes = [f"{name.translate(_NO_SEPARATORS)}: {e.shorthash}"
                  for name, e in self.used_embeddings.items() if e.shorthash]
        if ti_hashes and hashes:
            params["TI hashes"] = ", ".join(hashes)
        if self.emphasis != "Original" and any("(" in t or "[" in t for t in texts):
            params["Emphasis"] = self.emphasis
        return params

    def token_lookup(self, tokenizer_name: str, encoder_name: str):
        """The embeddings lookup for one encoder (None without embeddings), built once."""
        if not self.embeddings:
            return None
        if encoder_name not in self._lookups:
            self._lookups[encoder_name] = TokenLookup(self.embeddings, self.model.tokenizers[tokenizer_name], encoder_name)
        return self._lookups[encoder_name]

    def _encode_with(self, texts: list[str], encoder_name: str, tokenizer_name: str, layer: int,
                     final_norm: bool = False) -> list[Conditioning]:
        encoder = self.model.text_encoders[encoder_name]
        tokenizer = self.model.tokenizers[tokenizer_name]
        device = self.model.device
        lookup = self.token_lookup(tokenizer_name, encoder_name)
        per_text = [tokenize_weighted(tokenizer, t, self.emphasis, self.comma_backtrack, lookup) for t in texts]
        count = max(len(chunks) for chunks in per_text)
        empty = TokenChunk([tokenizer.pad_token_id] * CHUNK, [1.0] * CHUNK)
        rows = [chunks[i] if i < len(chunks) else empty for i in range(count) for chunks in per_text]  # chunk-major
        ids = torch.tensor([[tokenizer.bos_token_id] + c.ids + [tokenizer.eos_token_id] for c in rows], device=device)
        weights = torch.tensor([[1.0] + c.weights + [1.0] for c in rows], device=device)
        fixes = [[(fix.offset + 1, lookup.vectors(fix.embedding)) for fix in c.fixes] for c in rows]
        for row in rows:
            self.used_embeddings.update({fix.embedding.name: fix.embedding for fix in row.fixes})
        hidden_parts, pooled_parts = [], []
        for start in range(0, len(rows), ENCODE_GROUP):  # a very long prompt is many chunks: stop between groups
            if self.should_stop is not None and self.should_stop():
                raise InterruptedException
            out = _run_with_vectors(encoder, ids[start:start + ENCODE_GROUP], fixes[start:start + ENCODE_GROUP])
            hidden_parts.append(out.hidden_states[layer] if layer != -1 or not final_norm else out.last_hidden_state)
            pooled_parts.append(getattr(out, "text_embeds", None))
        hidden = torch.cat(hidden_parts)
        if final_norm and layer != -1:
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            hidden = norm(hidden)
        n = len(texts)
        hidden = hidden.float().reshape(count, n, *hidden.shape[1:])
        z = torch.stack([self._apply_emphasis(hidden[i], weights[i * n:(i + 1) * n]) for i in range(count)], dim=1)
        context = z.reshape(n, -1, z.shape[-1])
        has_pooled = pooled_parts[0] is not None
        pooled = torch.cat(pooled_parts)[:n].float() if has_pooled else None  # rows of chunk 0: A1111 pools the first chunk
        return [Conditioning(context[i:i + 1], None if pooled is None else pooled[i:i + 1]) for i in range(n)]

    def _apply_emphasis(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if bool((weights == 1).all()):
            return z
        original_mean = z.mean()
        z = z * weights.unsqueeze(-1)
        if self.emphasis == "Original":
            z = z * (original_mean / z.mean())
        return z


_NO_SEPARATORS = str.maketrans("", "", ":,")


def _run_with_vectors(encoder, ids: torch.Tensor, fixes: list[list[tuple[int, torch.Tensor]]]):
    """Run the text encoder; embedding vectors replace the token embeddings at their positions (a forward hook on the
    token embedding layer for this call only, so the tokenizer and the model stay untouched)."""
    if not any(fixes):
        return encoder(ids, output_hidden_states=True)
    token_embedding = getattr(encoder, "text_model", encoder).embeddings.token_embedding

    def insert_vectors(module, args, output):
        output = output.clone()
        for row, row_fixes in enumerate(fixes):
            for offset, vectors in row_fixes:
                output[row, offset:offset + vectors.shape[0]] = vectors.to(output)
        return output

    handle = token_embedding.register_forward_hook(insert_vectors)
    try:
        return encoder(ids, output_hidden_states=True)
    finally:
        handle.remove()


def _pad_tokens(context: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last token vector to reach `length` tokens (A1111's way of batching prompts of different lengths)."""
    missing = length - context.shape[1]
    return context if missing == 0 else torch.cat([context, context[:, -1:].expand(-1, missing, -1)], dim=1)
