"""Hypernetwork training (A1111's train_hypernetwork), on the loop of textual_inversion_training.

The hypernetwork's MLPs train in float32 on the model's device, installed on the UNet for the run (previews included);
the prompts are encoded without grad, once per distinct text. Copies go to …/NAME/hypernetworks, the result to the
hypernetworks folder; the loss log is A1111's hypernetwork_loss.csv, and a saved optimizer state is tied to the saved
file's short sha256 (A1111's hypernetwork shorthash).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from modules import hashes, hypernetworks, textual_inversion, textual_inversion_training as training
from modules.prompt_encoding import Conditioning
from modules.shared_state import state

A1111_WEIGHT_DECAY = 0.01  # torch's AdamW default, which A1111's hypernetwork optimizer keeps
SHORTHASH_LENGTH = 10  # A1111's hypernetwork shorthash: the first 10 hex digits of the file's sha256


def file_shorthash(filename: str) -> str:
    return hashes.calculate_sha256(filename)[:SHORTHASH_LENGTH]


def cached_conditioning(encoder) -> Callable[[list[str]], Conditioning]:
    """Batch conditioning from per-text encodings made once: the text encoders do not train here."""
    cache: dict[str, Conditioning] = {}

    def conditioning(texts: list[str]) -> Conditioning:
        missing = [text for text in dict.fromkeys(texts) if text not in cache]
        if missing:
            with torch.no_grad():
                cache.update(zip(missing, encoder.get_learned_conditioning(missing)))
        return Conditioning.stack([cache[text] for text in texts])

    return conditioning


def train_hypernetwork(hypernetwork_name: str, learn_rate: str = "0.00001", batch_size: int = 1, gradient_step: int = 1,
                       data_root: str = "", log_directory: str = "textual_inversion", training_width: int = 512,
                       training_height: int = 512, varsize: bool = False, steps: int = 100000,
                       clip_grad_mode: str = "disabled", clip_grad_value: str = "0.1", shuffle_tags: bool = False,
                       tag_drop_out: float = 0.0, latent_sampling_method: str = "once", use_weight: bool = False,
                       create_image_every: int = 500, save_hypernetwork_every: int = 500,
                       template_filename: str = "style_filewords.txt", preview_from_txt2img: bool = False,
                       preview_prompt: str = "", preview_negative_prompt: str = "", preview_steps: int = 20,
                       preview_sampler_name: str | None = None, preview_cfg_scale: float = 7.0, preview_seed: int = -1,
                       preview_width: int = 512, preview_height: int = 512, *, model=None, seed: int | None = None,
                       callback: Callable[[int, float], None] | None = None):
    """Train a hypernetwork of the hypernetworks folder on `model` (default: the current checkpoint); continues from
    its saved step. Returns (hypernetwork, file, message)."""
    settings = training.TrainSettings(learn_rate, batch_size, gradient_step, data_root, log_directory, training_width,
                                      training_height, varsize, steps, clip_grad_mode, clip_grad_value, shuffle_tags,
                                      tag_drop_out, latent_sampling_method, use_weight, create_image_every,
                                      save_hypernetwork_every, template_filename, preview_from_txt2img, preview_prompt,
                                      preview_negative_prompt, preview_steps, preview_sampler_name, preview_cfg_scale,
                                      preview_seed, preview_width, preview_height, seed)
    training.validate_settings(hypernetwork_name, settings, "hypernetwork")
    filename = hypernetworks.list_hypernetworks().get(hypernetwork_name)
    if filename is None:
        raise ValueError(f"Hypernetwork {hypernetwork_name} not found in the hypernetworks folder")
    model = model or textual_inversion.current_model()
    hypernet = hypernetworks.Hypernetwork(hypernetwork_name, filename)  # a fresh copy: the cached one stays as saved
    hypernet.to(model.device, torch.float32)
    info = model.sd_checkpoint_info
    encoder = training.prompt_encoder(model, textual_inversion.embedding_db().usable_for(model))

    def save(target: str, step: int, name: str) -> None:
        hypernet.save(target, step=step, name=name, sd_checkpoint=info.shorthash, sd_checkpoint_name=info.model_name)

    trainee = training.Trainee(hypernetwork_name, "hypernetwork", hypernet.parameters(), hypernet.step,
                               cached_conditioning(encoder), save, ".pt", weight_decay=A1111_WEIGHT_DECAY,
                               state_hash=file_shorthash, loss_csv="hypernetwork_loss.csv")
    state.begin(job="train-hypernetwork")
    try:
        with training.frozen(model), hypernetworks.training_hypernetwork(model, hypernet):
            hypernet.train_mode()
            interrupted = training.run_training(model, trainee, settings, filename, callback)
    finally:
        hypernet.eval_mode()
        state.end()
    hypernetworks.list_hypernetworks()
    return hypernet, filename, training.training_message(trainee, filename, interrupted)
