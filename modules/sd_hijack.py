"""A1111's modules.sd_hijack: `model_hijack`, the object extensions ask about the prompt encoder and embeddings.

A1111 patched LDM's modules in place (hijack/undo_hijack). Atelier runs diffusers modules and changes behaviour in its
own code around them, so hijack() and undo_hijack() have nothing to patch; the rest answers from the engine.
"""
from __future__ import annotations

import logging

from modules import sd_hijack_clip, textual_inversion

log = logging.getLogger(__name__)


class StableDiffusionModelHijack:
    """A1111's model_hijack: token counts, the embeddings database, notes for the infotext's comments."""

    optimization_method = None  # no pluggable cross-attention: diffusers' modules use PyTorch's own attention

    def __init__(self):
        self.comments: list[str] = []
        self.extra_generation_params: dict = {}

    @property
    def embedding_db(self) -> textual_inversion.EmbeddingDatabase:
        """The textual inversion database, its folders read again if they changed (A1111 reloads on each job)."""
        db = textual_inversion.embedding_db()
        db.load_textual_inversion_embeddings()
        return db

    @property
    def clip(self):
        """The current model's first text encoder (A1111: the wrapped cond_stage_model), None without a model."""
        from modules import (
            shared,  # shared imports sd_models, which extensions may import before this module
        )

        model = shared.sd_model
        return None if model is None else model.cond_stage_model

    def get_prompt_lengths(self, text: str, cond_stage_model=None) -> tuple[int, int]:
        """(token count, target length): `a cat` -> (2, 75); Forge's extra cond_stage_model argument is accepted."""
        return sd_hijack_clip.prompt_lengths(text)

    def hijack(self, m=None) -> None:
        log.debug("model_hijack.hijack: nothing to patch, Atelier runs diffusers modules")

    def undo_hijack(self, m=None) -> None:
        log.debug("model_hijack.undo_hijack: nothing to restore, Atelier runs diffusers modules")

    def clear_comments(self) -> None:
        self.comments = []
        self.extra_generation_params = {}


model_hijack = StableDiffusionModelHijack()
