"""Textual inversion training (A1111's train_embedding) and the training loop it shares with hypernetworks.

Only the trained tensors (an embedding's vectors, or a hypernetwork's MLPs) require grad; the checkpoint's weights stay
frozen and untouched. The loss is the UNet's noise (or v) prediction error at a random training timestep of the
model's own schedule. On CUDA the forward runs under autocast (fp16 with a GradScaler, or bf16); on the CPU in fp32.
Copies are saved every N steps to <data>/textual_inversion/DATE/NAME/embeddings (…/hypernetworks) and previews to
…/images (for embeddings also …/image_embeddings: the preview carrying the embedding in a PNG chunk); an interrupt stops
after the current step and the trained state is saved as on a normal finish. A1111's training settings: the loss goes to
a CSV in the log folder every `training_write_csv_every` steps; with `save_optimizer_state` each saved file gets a
`.optim` beside it with the optimizer's state and the hash of the state it belongs to, loaded again on resume.
"""
from __future__ import annotations

import collections
import contextlib
import csv
import datetime
import html
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from modules import (
    image_embedding,
    images,
    job_context,
    paths_internal,
    processing,
    textual_inversion,
    training_dataset,
)
from modules.learn_schedule import LearnRateScheduler
from modules.prompt_encoding import Conditioning, PromptEncoder
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)
CLIP_GRAD_MODES = ("disabled", "value", "norm")
JOB_FIELDS = ("job", "job_count", "job_no", "sampling_step", "sampling_steps", "textinfo", "time_start", "job_timestamp")
OPTIM_SUFFIX = ".optim"
OPTIMIZER_NAME = "AdamW"
LOSS_CSV_FIELDS = ("step", "epoch", "epoch_step", "loss", "learn_rate")


@dataclass
class TrainSettings:
    """The Train tab's shared fields (A1111's argument names)."""

    learn_rate: str
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str = ""
    log_directory: str = "textual_inversion"
    training_width: int = 512
    training_height: int = 512
    varsize: bool = False
    steps: int = 100000
    clip_grad_mode: str = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0
    latent_sampling_method: str = "once"
    use_weight: bool = False
    create_image_every: int = 500
    save_every: int = 500
    template_filename: str = "style_filewords.txt"
    preview_from_txt2img: bool = False
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    preview_steps: int = 20
    preview_sampler_name: str | None = None
    preview_cfg_scale: float = 7.0
    preview_seed: int = -1
    preview_width: int = 512
    preview_height: int = 512
    seed: int | None = None  # noise, timesteps and data order; None: a new random run


@dataclass
class Trainee:
    """What one training run optimises and how it is saved; `conditioning` encodes a batch's prompts."""

    name: str
    kind: str                                   # "embedding" or "hypernetwork": folder names and messages
    params: list[torch.Tensor]
    step: int
    conditioning: Callable[[list[str]], Conditioning]
    save: Callable[[str, int, str], None]       # (file, step, name written into it)
    copy_extension: str
    weight_decay: float
    state_hash: Callable[[str], str]            # (file holding the state) -> the hash its optimizer state is tied to
    loss_csv: str                               # A1111's loss log name in the log folder
    # (preview image, step, log folder) -> the preview saved with the trained state in it; None: not saved
    preview_with_state: Callable[[Image.Image, int, str], str] | None = None
    last_saved: str = "<none>"
    last_image: str = "<none>"
    losses: collections.deque = field(default_factory=lambda: collections.deque(maxlen=32))
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One run's log folder, optimizer and epoch length (optimizer steps per pass over the data)."""

    folder: str
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int

    @property
    def images_dir(self) -> str:
        return os.path.join(self.folder, "images")

    def save_dir(self, trainee: Trainee) -> str:
        return os.path.join(self.folder, f"{trainee.kind}s")


def validate_settings(name: str, settings: TrainSettings, what: str) -> None:
    """Every mistake a user can make in the form (a malformed schedule included), found before the model or the data
    are touched."""
    if not name:
        raise ValueError(f"Choose the {what} to train")
    if int(settings.batch_size) < 1:
        raise ValueError(f"Batch size must be at least 1, got {settings.batch_size}")
    if int(settings.gradient_step) < 1:
        raise ValueError(f"Gradient accumulation steps must be at least 1, got {settings.gradient_step}")
    if int(settings.steps) < 1:
        raise ValueError(f"Max steps must be at least 1, got {settings.steps}")
    if int(settings.save_every) < 0 or int(settings.create_image_every) < 0:
        raise ValueError("Save and preview intervals must be 0 (never) or more")
    if settings.clip_grad_mode not in CLIP_GRAD_MODES:
        raise ValueError(f"Gradient clipping must be one of {', '.join(CLIP_GRAD_MODES)}, got {settings.clip_grad_mode!r}")
    if settings.latent_sampling_method not in training_dataset.LATENT_SAMPLING_METHODS:
        raise ValueError(f"Latent sampling method must be one of {', '.join(training_dataset.LATENT_SAMPLING_METHODS)}, "
                         f"got {settings.latent_sampling_method!r}")
    if not settings.log_directory:
        raise ValueError("Log directory is empty")
    LearnRateScheduler(settings.learn_rate, int(settings.steps))
    if settings.clip_grad_mode != "disabled":
        LearnRateScheduler(settings.clip_grad_value, int(settings.steps))
    training_dataset.image_files(settings.data_root)
    training_dataset.template_path(settings.template_filename)


def log_folder(log_directory: str, name: str) -> str:
    """A1111's layout: LOG_DIRECTORY/YYYY-MM-DD/NAME, a relative log directory under the data dir."""
    root = log_directory if os.path.isabs(log_directory) else os.path.join(paths_internal.data_path, log_directory)
    return os.path.join(root, datetime.datetime.now().strftime("%Y-%m-%d"), name)


@contextlib.contextmanager
def frozen(model):
    """Every weight of the checkpoint without grad and in eval mode for the run; the previous flags afterwards."""
    candidates = (model.unet, model.vae, model.base_vae, *model.text_encoders.values())
    parts = list({id(m): m for m in candidates if m is not None}.values())
    grads = [(p, p.requires_grad) for part in parts for p in part.parameters()]
    modes = [(m, m.training) for part in parts for m in part.modules()]
    for part in parts:
        part.eval().requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.train(flag)


def precision(model):
    """(autocast context factory, GradScaler): mixed precision in the model's half dtype on CUDA, fp32 elsewhere."""
    device, dtype = model.device, model.plan.dtype
    if device.type != "cuda" or dtype == torch.float32:
        return contextlib.nullcontext, torch.amp.GradScaler(device.type, enabled=False)
    return (lambda: torch.autocast("cuda", dtype=dtype)), torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def alphas_cumprod(model, device) -> torch.Tensor:
    """The model's training schedule, from its sigmas: alpha_bar = 1 / (1 + sigma^2)."""
    return 1.0 / (1.0 + model.model_sigmas.sigmas.to(device, torch.float32) ** 2)


def diffusion_loss(model, latents: torch.Tensor, cond: Conditioning, noise: torch.Tensor, timesteps: torch.Tensor,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the UNet's prediction for latents noised to `timesteps` and its target: the noise (eps models)
    or v = sqrt(a) * noise - sqrt(1 - a) * x0 (v-prediction); `weights` [B, h, w] weigh each latent pixel."""
    abar = alphas_cumprod(model, latents.device)[timesteps][:, None, None, None]
    a, b = abar.sqrt(), (1 - abar).sqrt()
    noisy = a * latents + b * noise
    unet = model.unet
    dtype = next(unet.parameters()).dtype
    added = None
    if cond.pooled is not None:  # SDXL: original size, crop (0, 0), target size
        h, w = latents.shape[-2] * 8, latents.shape[-1] * 8
        time_ids = torch.tensor([[h, w, 0, 0, h, w]] * latents.shape[0], device=latents.device, dtype=dtype)
        added = {"text_embeds": cond.pooled.to(dtype), "time_ids": time_ids}
    out = unet(noisy.to(dtype), timesteps, encoder_hidden_states=cond.context.to(dtype), added_cond_kwargs=added,
               return_dict=False)[0].float()
    target = a * noise - b * latents if model.family.prediction_type == "v_prediction" else noise
    error = (out - target) ** 2
    if weights is not None:
        error = error * weights[:, None].to(error)
    return error.mean()


def prompt_encoder(model, embeddings: dict) -> PromptEncoder:
    return PromptEncoder(model, clip_skip=opts.CLIP_stop_at_last_layers, emphasis=opts.emphasis,
                         comma_backtrack=opts.comma_padding_backtrack, embeddings=embeddings)


def encode(encoder: PromptEncoder, texts: list[str]) -> Conditioning:
    return Conditioning.stack(encoder.get_learned_conditioning(texts))


@contextlib.contextmanager
def kept_job_state():
    """A preview is a txt2img job of its own: the training job's progress, and a pending interrupt, survive it."""
    saved = {name: getattr(state, name) for name in JOB_FIELDS}
    interrupted = state.interrupted
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(state, name, value)
        state.interrupted = state.interrupted or interrupted


def make_preview(model, settings: TrainSettings, prompt: str, images_dir: str, filename: str) -> tuple[str, Image.Image]:
    """A txt2img image with the state being trained, saved as images_dir/filename; shown as the live preview.
    Returns (file, image)."""
    if settings.preview_from_txt2img:
        fields = {"prompt": settings.preview_prompt, "negative_prompt": settings.preview_negative_prompt,
                  "steps": settings.preview_steps, "sampler_name": settings.preview_sampler_name,
                  "cfg_scale": settings.preview_cfg_scale, "seed": settings.preview_seed,
                  "width": settings.preview_width, "height": settings.preview_height}
    else:
        fields = {"prompt": prompt, "steps": 20, "width": settings.training_width, "height": settings.training_height}
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, do_not_save_samples=True, do_not_save_grid=True,
                                                    **fields)
    with kept_job_state(), job_context.progress_held():
        processed = processing.process_images(p)
    image = processed.images[processed.index_of_first_image]
    state.assign_current_image(image)
    path, _ = images.save_image(image, images_dir, "", p.seed, p.prompt, opts.samples_format, processed.infotexts[0], p=p,
                                forced_filename=filename, save_to_dirs=False)
    return path, image


def save_state(trainee: Trainee, optimizer: torch.optim.Optimizer, filename: str, step: int, name: str) -> None:
    """The trained state to `filename`; with `save_optimizer_state` also the optimizer's state beside it (.optim),
    tied to the hash of what was just saved (A1111's layout: hash, optimizer_name, optimizer_state_dict)."""
    trainee.save(filename, step, name)
    if not opts.save_optimizer_state:
        return
    target = filename + OPTIM_SUFFIX
    tmp = f"{target}.tmp"
    torch.save({"hash": trainee.state_hash(filename), "optimizer_name": OPTIMIZER_NAME,
                "optimizer_state_dict": optimizer.state_dict()}, tmp)
    os.replace(tmp, target)


def load_optimizer_state(trainee: Trainee, optimizer: torch.optim.Optimizer, filename: str) -> None:
    """A1111's resume: with `save_optimizer_state`, the optimizer state saved beside `filename` is loaded when its hash
    is the hash of the state training starts from; otherwise the optimizer starts fresh, with a note."""
    path = filename + OPTIM_SUFFIX
    if not opts.save_optimizer_state or not os.path.exists(path):
        return
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        current = trainee.state_hash(filename)
        if not isinstance(saved, dict) or saved.get("optimizer_name", OPTIMIZER_NAME) != OPTIMIZER_NAME:
            trainee.notes.append(f"Optimizer state {path} is not an {OPTIMIZER_NAME} state: starting a fresh optimizer")
        elif saved.get("hash") != current:
            trainee.notes.append(f"Optimizer state {path} belongs to another state of {trainee.name} (hash "
                                 f"{saved.get('hash')}, now {current}): starting a fresh optimizer")
        else:
            optimizer.load_state_dict(saved["optimizer_state_dict"])
            trainee.notes.append(f"Optimizer state loaded from {path}")
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError) as e:  # a damaged file must not stop training
        trainee.notes.append(f"Optimizer state {path} could not be read ({e}): starting a fresh optimizer")
    log.info(trainee.notes[-1])


def write_loss(run: Run, trainee: Trainee, learn_rate: float) -> None:
    """A1111's loss log: a row every `training_write_csv_every` steps (0: never), the header when the file is new."""
    every, step = int(opts.training_write_csv_every or 0), trainee.step
    if every <= 0 or step % every:
        return
    os.makedirs(run.folder, exist_ok=True)
    path = os.path.join(run.folder, trainee.loss_csv)
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf8") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(LOSS_CSV_FIELDS)
        writer.writerow([step, (step - 1) // run.steps_per_epoch, (step - 1) % run.steps_per_epoch + 1,
                         f"{trainee.losses[-1]:.7f}", learn_rate])


def run_training(model, trainee: Trainee, settings: TrainSettings, final_file: str,
                 callback: Callable[[int, float], None] | None = None) -> bool:
    """The loop: optimizer steps until max steps, the end of the schedule or an interrupt, then `final_file` is
    written. Returns whether it was interrupted. `callback(step, loss)` runs after each optimizer step."""
    steps = int(settings.steps)
    if trainee.step >= steps:
        raise ValueError(f"{trainee.name} has already been trained for {trainee.step} steps, which reaches Max steps "
                         f"({steps}): raise Max steps to train further")
    scheduler = LearnRateScheduler(settings.learn_rate, steps, trainee.step)
    clip = LearnRateScheduler(settings.clip_grad_value, steps, trainee.step) if settings.clip_grad_mode != "disabled" else None
    seed = settings.seed if settings.seed is not None else random.randrange(2**32)
    state.job_count, state.job_no = 1, 0
    state.sampling_steps, state.sampling_step = steps - trainee.step, 0
    state.textinfo = f"Preparing dataset from {html.escape(settings.data_root)}..."
    dataset = training_dataset.PersonalizedBase(
        settings.data_root, int(settings.training_width), int(settings.training_height), trainee.name, model,
        training_dataset.template_path(settings.template_filename), batch_size=int(settings.batch_size),
        varsize=bool(settings.varsize), shuffle_tags=bool(settings.shuffle_tags), tag_drop_out=float(settings.tag_drop_out),
        latent_sampling_method=settings.latent_sampling_method, use_weight=bool(settings.use_weight), seed=seed)
    autocast, scaler = precision(model)
    optimizer = torch.optim.AdamW(trainee.params, lr=scheduler.learn_rate, weight_decay=trainee.weight_decay)
    load_optimizer_state(trainee, optimizer, final_file)
    run = Run(log_folder(settings.log_directory, trainee.name), optimizer, max(len(dataset) // int(settings.gradient_step), 1))
    generator = torch.Generator(model.device).manual_seed(seed)
    gradient_step, start, accumulated, loss_sum = int(settings.gradient_step), trainee.step, 0, 0.0
    while not (scheduler.finished or state.interrupted):
        for batch in dataset.epoch():
            scheduler.apply(optimizer, trainee.step)
            if scheduler.finished or state.interrupted:
                break
            latents = batch.latents.to(model.device)
            noise = torch.randn(latents.shape, generator=generator, device=model.device)
            timesteps = torch.randint(0, len(model.model_sigmas), (latents.shape[0],), generator=generator,
                                      device=model.device)
            with autocast():
                loss = diffusion_loss(model, latents, trainee.conditioning(batch.cond_texts), noise, timesteps,
                                      batch.weights) / gradient_step
            if not loss.requires_grad:
                raise ValueError(f"The prompt {batch.cond_texts[0]!r} does not use {trainee.name}: nothing to train")
            scaler.scale(loss).backward()
            loss_sum += loss.item()
            accumulated += 1
            if accumulated < gradient_step:
                continue
            if clip is not None:
                clip.step(trainee.step)
                scaler.unscale_(optimizer)
                if settings.clip_grad_mode == "value":
                    torch.nn.utils.clip_grad_value_(trainee.params, clip.learn_rate)
                else:
                    torch.nn.utils.clip_grad_norm_(trainee.params, clip.learn_rate)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            trainee.step += 1
            trainee.losses.append(loss_sum)
            accumulated, loss_sum = 0, 0.0
            after_step(model, trainee, settings, batch.cond_texts[0], run, scheduler.learn_rate)
            state.sampling_step = trainee.step - start
            if callback is not None:
                callback(trainee.step, trainee.losses[-1])
    save_state(trainee, optimizer, final_file, trainee.step, trainee.name)
    return bool(state.interrupted)


def after_step(model, trainee: Trainee, settings: TrainSettings, prompt: str, run: Run, learn_rate: float) -> None:
    """Copies, loss log and previews at their intervals, and the progress text."""
    step = trainee.step
    if settings.save_every and step % int(settings.save_every) == 0:
        os.makedirs(run.save_dir(trainee), exist_ok=True)
        trainee.last_saved = os.path.join(run.save_dir(trainee), f"{trainee.name}-{step}{trainee.copy_extension}")
        save_state(trainee, run.optimizer, trainee.last_saved, step, f"{trainee.name}-{step}")
    write_loss(run, trainee, learn_rate)
    if settings.create_image_every and step % int(settings.create_image_every) == 0:
        os.makedirs(run.images_dir, exist_ok=True)
        trainee.last_image, image = make_preview(model, settings, prompt, run.images_dir, f"{trainee.name}-{step}")
        if trainee.preview_with_state is not None:
            trainee.preview_with_state(image, step, run.folder)
    mean_loss = sum(trainee.losses) / len(trainee.losses)
    state.textinfo = (f"<p>Loss: {mean_loss:.7f}<br/>Step: {step}<br/>Last prompt: {html.escape(prompt)}<br/>"
                      f"Last saved {trainee.kind}: {html.escape(trainee.last_saved)}<br/>"
                      f"Last saved image: {html.escape(trainee.last_image)}<br/></p>")


def training_message(trainee: Trainee, filename: str, interrupted: bool) -> str:
    return "\n".join([f"Training {'interrupted' if interrupted else 'finished'} at {trainee.step} steps.",
                      f"{trainee.kind.capitalize()} saved to {filename}", *trainee.notes])


def save_preview_with_embedding(image: Image.Image, embedding: textual_inversion.Embedding, checkpoint_info,
                                folder: str) -> str:
    """The preview, captioned like A1111's (<name>, checkpoint, [hash], "Nv Ss"), as folder/image_embeddings/NAME.png
    carrying `embedding` in its sd-ti-embedding chunk: dropped into the embeddings folder it loads as NAME."""
    captioned = image_embedding.caption_image_overlay(image, f"<{embedding.name}>", checkpoint_info.model_name,
                                                      f"[{checkpoint_info.shorthash}]",
                                                      f"{embedding.vectors}v {embedding.step}s")
    target = os.path.join(folder, "image_embeddings")
    os.makedirs(target, exist_ok=True)
    return image_embedding.save_image_with_embedding(captioned, embedding.data(), os.path.join(target, f"{embedding.name}.png"))


def embedding_file(embedding: textual_inversion.Embedding) -> str:
    """Where the trained embedding goes: its own file when that holds A1111's format for its kind, else a file of
    that format beside it (SDXL: .safetensors, others: .pt)."""
    extension = ".safetensors" if isinstance(embedding.vec, dict) else ".pt"
    if embedding.filename and embedding.filename.lower().endswith(extension):
        return embedding.filename
    folder = os.path.dirname(embedding.filename) if embedding.filename else cmd_opts.embeddings_dir
    return os.path.join(folder, embedding.name + extension)


def find_embedding(model, name: str) -> textual_inversion.Embedding:
    db = textual_inversion.embedding_db()
    usable = db.usable_for(model)
    if name in usable:
        return usable[name]
    if name in db.word_embeddings:
        raise ValueError(f"Embedding {name} was made for another model family than {model.family.label}")
    raise ValueError(f"Embedding {name} not found in {', '.join(db.embedding_dirs)}")


def train_embedding(embedding_name: str, learn_rate: str = "0.005", batch_size: int = 1, gradient_step: int = 1,
                    data_root: str = "", log_directory: str = "textual_inversion", training_width: int = 512,
                    training_height: int = 512, varsize: bool = False, steps: int = 100000,
                    clip_grad_mode: str = "disabled", clip_grad_value: str = "0.1", shuffle_tags: bool = False,
                    tag_drop_out: float = 0.0, latent_sampling_method: str = "once", use_weight: bool = False,
                    create_image_every: int = 500, save_embedding_every: int = 500,
                    template_filename: str = "style_filewords.txt", save_image_with_stored_embedding: bool = True,
                    preview_from_txt2img: bool = False, preview_prompt: str = "", preview_negative_prompt: str = "",
                    preview_steps: int = 20, preview_sampler_name: str | None = None, preview_cfg_scale: float = 7.0,
                    preview_seed: int = -1, preview_width: int = 512, preview_height: int = 512, *, model=None,
                    seed: int | None = None, callback: Callable[[int, float], None] | None = None):
    """Train an embedding of the embeddings folder on `model` (default: the current checkpoint); continues from its
    saved step. save_image_with_stored_embedding: each preview is also saved carrying the embedding of its step.
    Returns (embedding, file, message)."""
    settings = TrainSettings(learn_rate, batch_size, gradient_step, data_root, log_directory, training_width,
                             training_height, varsize, steps, clip_grad_mode, clip_grad_value, shuffle_tags, tag_drop_out,
                             latent_sampling_method, use_weight, create_image_every, save_embedding_every,
                             template_filename, preview_from_txt2img, preview_prompt, preview_negative_prompt,
                             preview_steps, preview_sampler_name, preview_cfg_scale, preview_seed, preview_width,
                             preview_height, seed)
    validate_settings(embedding_name, settings, "embedding")
    template = training_dataset.template_path(template_filename)
    if not all("[name]" in line for line in training_dataset.read_template(template)):
        raise ValueError(f"Every line of the prompt template {template_filename} must hold [name] to train an embedding "
                         f"(its prompts would not contain the embedding)")
    model = model or textual_inversion.current_model()
    embedding = find_embedding(model, embedding_name)
    info = model.sd_checkpoint_info
    original = embedding.vec
    if isinstance(original, dict):
        vec = {key: v.detach().to(model.device, torch.float32).clone().requires_grad_(True) for key, v in original.items()}
        params = list(vec.values())
    else:
        vec = original.detach().to(model.device, torch.float32).clone().requires_grad_(True)
        params = [vec]
    embedding.vec = vec  # the database's own object: previews made during the run use the vectors being trained
    usable = textual_inversion.embedding_db().usable_for(model)
    encoder = prompt_encoder(model, {**usable, embedding.name: embedding})

    def snapshot(name: str, step: int) -> textual_inversion.Embedding:
        return textual_inversion.Embedding(name, vec, step=step, sd_checkpoint=info.shorthash,
                                           sd_checkpoint_name=info.model_name)

    def save(filename: str, step: int, name: str) -> None:
        snapshot(name, step).save(filename)

    def preview_with_embedding(image: Image.Image, step: int, folder: str) -> str:
        return save_preview_with_embedding(image, snapshot(f"{embedding.name}-{step}", step), info, folder)

    trainee = Trainee(embedding.name, "embedding", params, int(embedding.step or 0), lambda texts: encode(encoder, texts),
                      save, ".safetensors" if isinstance(vec, dict) else ".pt", weight_decay=0.0,
                      state_hash=lambda _file: textual_inversion.vectors_checksum(vec),
                      loss_csv="textual_inversion_loss.csv",
                      preview_with_state=preview_with_embedding if save_image_with_stored_embedding else None)
    filename = embedding_file(embedding)
    state.begin(job="train-embedding")
    try:
        with frozen(model):
            interrupted = run_training(model, trainee, settings, filename, callback)
    finally:
        embedding.vec = original
        state.end()
    textual_inversion.embedding_db().load_textual_inversion_embeddings(force_reload=True)
    trained = textual_inversion.embedding_db().word_embeddings.get(embedding.name, embedding)
    return trained, filename, training_message(trainee, filename, interrupted)
