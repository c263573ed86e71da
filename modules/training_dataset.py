"""The training data of the Train tab (A1111's PersonalizedBase): images with captions, turned into cached VAE latents
and prompts from a template.

A caption is the .txt beside the image, else the file name without leading numbers. A template file holds prompt
lines with [name] (the embedding or hypernetwork) and [filewords] (the caption's comma-separated tags, which may be
shuffled and dropped per use). Latents: "once" samples the VAE's distribution once, "deterministic" takes its mean,
"random" samples it anew for every batch.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from modules import paths_internal
from modules.shared_cmd_options import cmd_opts

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LATENT_SAMPLING_METHODS = ("once", "deterministic", "random")
NUMBERS_AT_START = re.compile(r"^[-\d]+\s*")


def templates_dir() -> str:
    """--textual-inversion-templates-dir, else the templates that come with Atelier."""
    return cmd_opts.textual_inversion_templates_dir or os.path.join(paths_internal.script_path, "textual_inversion_templates")


def list_templates(folder: str | None = None) -> dict[str, str]:
    """Template file name (relative, e.g. `style_filewords.txt`) -> path, from the templates folder, recursively."""
    root = folder or templates_dir()
    found = {}
    for dirpath, _, files in sorted(os.walk(root)):
        for fn in sorted(files, key=str.lower):
            if fn.lower().endswith(".txt"):
                path = os.path.join(dirpath, fn)
                found[os.path.relpath(path, root).replace(os.sep, "/")] = path
    return found


def template_path(template_filename: str, folder: str | None = None) -> str:
    """The file of a template name; ValueError naming the templates there when it is not one of them."""
    templates = list_templates(folder)
    if template_filename in templates:
        return templates[template_filename]
    raise ValueError(f"Prompt template file {template_filename!r} not found in {folder or templates_dir()}; "
                     f"available: {', '.join(templates) or 'none'}")


def read_template(path: str) -> list[str]:
    with open(path, encoding="utf8") as file:
        lines = [line.strip() for line in file if line.strip()]
    if not lines:
        raise ValueError(f"Prompt template file {os.path.basename(path)} has no lines")
    return lines


def caption_of(path: str) -> str:
    """The .txt beside the image, else the file name without its extension and leading numbers."""
    text_file = os.path.splitext(path)[0] + ".txt"
    if os.path.isfile(text_file):
        with open(text_file, encoding="utf8") as file:
            return file.read().strip()
    return NUMBERS_AT_START.sub("", os.path.splitext(os.path.basename(path))[0])


def make_text(line: str, placeholder: str, caption: str, shuffle_tags: bool, tag_drop_out: float,
              rng: random.Random) -> str:
    """A template line with [name] and [filewords] filled; tags dropped with probability tag_drop_out, then shuffled."""
    tags = caption.split(",")
    if tag_drop_out:
        tags = [tag for tag in tags if rng.random() > tag_drop_out]
    if shuffle_tags:
        rng.shuffle(tags)
    return line.replace("[filewords]", ",".join(tags)).replace("[name]", placeholder)


@dataclass
class DatasetEntry:
    filename: str
    caption: str
    latent_mean: torch.Tensor            # [4, h, w], scaled like the UNet's latents (CPU, float32)
    latent_std: torch.Tensor | None      # kept for "random": a new sample per use
    latent_sample: torch.Tensor | None   # "once" / "deterministic": the fixed latent
    weight: torch.Tensor | None = None   # [h, w] loss weight from the alpha channel, mean 1
    cond_text: str | None = None         # fixed prompt when tags are neither shuffled nor dropped


@dataclass
class Batch:
    latents: torch.Tensor          # [B, 4, h, w]
    cond_texts: list[str]
    weights: torch.Tensor | None   # [B, h, w] or None
    filenames: list[str]


def image_files(data_root: str) -> list[str]:
    if not data_root or not os.path.isdir(data_root):
        raise ValueError(f"Dataset directory {data_root!r} does not exist")
    files = [os.path.join(data_root, fn) for fn in sorted(os.listdir(data_root), key=str.lower)
             if fn.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"No images found in the dataset directory {data_root}")
    return files


class PersonalizedBase:
    """The dataset: every image encoded once by the model's VAE; batches of `batch_size` in a new order every epoch
    (same-size images together with varsize), incomplete batches dropped."""

    def __init__(self, data_root: str, width: int, height: int, placeholder_token: str, model, template_file: str,
                 batch_size: int = 1, varsize: bool = False, shuffle_tags: bool = False, tag_drop_out: float = 0.0,
                 latent_sampling_method: str = "once", use_weight: bool = False, repeats: int = 1, seed: int | None = None):
        if latent_sampling_method not in LATENT_SAMPLING_METHODS:
            raise ValueError(f"Latent sampling method must be one of {', '.join(LATENT_SAMPLING_METHODS)}, "
                             f"got {latent_sampling_method!r}")
        if not varsize and (width % 8 or height % 8 or width < 8 or height < 8):
            raise ValueError(f"Width and height must be positive multiples of 8, got {width}x{height}")
        if not 0 <= tag_drop_out < 1:
            raise ValueError(f"Tag dropout must be from 0 to below 1, got {tag_drop_out}")
        self.placeholder_token = placeholder_token
        self.lines = read_template(template_file)
        self.shuffle_tags, self.tag_drop_out = shuffle_tags, tag_drop_out
        self.latent_sampling_method = latent_sampling_method
        self.batch_size = int(batch_size)
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed if seed is not None else random.randrange(2**63))
        files = image_files(data_root)
        if self.batch_size < 1 or self.batch_size > len(files) * repeats:
            raise ValueError(f"Batch size must be from 1 to the number of images ({len(files)}), got {batch_size}")
        self.entries = [self._entry(path, model, width, height, varsize, use_weight) for path in files] * repeats
        sizes: dict[tuple, int] = {}
        for entry in self.entries:
            sizes[tuple(entry.latent_mean.shape)] = sizes.get(tuple(entry.latent_mean.shape), 0) + 1
        self.length = sum(count // self.batch_size for count in sizes.values())
        if not self.length:
            raise ValueError(f"No {self.batch_size} images of the same size for a batch: use a smaller batch size or "
                             f"resize the images")

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.length

    def _entry(self, path: str, model, width: int, height: int, varsize: bool, use_weight: bool) -> DatasetEntry:
        with Image.open(path) as opened:
            image = opened.convert("RGBA") if use_weight and "A" in opened.getbands() else opened.convert("RGB")
        if varsize:  # the image's own size, rounded down to what the VAE takes
            width, height = max(image.width // 8 * 8, 8), max(image.height // 8 * 8, 8)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BICUBIC)
        pixels = np.asarray(image, dtype=np.float32)
        rgb = torch.from_numpy(pixels[..., :3] / 127.5 - 1.0).permute(2, 0, 1)[None]
        vae = model.vae
        with torch.no_grad():
            dist = vae.encode(rgb.to(model.device, next(vae.parameters()).dtype)).latent_dist
            scale = vae.config.scaling_factor
            mean = (dist.mean.float() * scale)[0].cpu()
            std = (dist.std.float() * scale)[0].cpu()
        if not torch.isfinite(mean).all():
            raise ValueError(f"The VAE produced NaN for {os.path.basename(path)} in {next(vae.parameters()).dtype}: "
                             f"start Atelier with --no-half-vae to train on this model")
        weight = None
        if pixels.shape[-1] == 4:  # PNG alpha as the loss weight at latent resolution
            alpha = Image.fromarray(pixels[..., 3].astype(np.uint8)).resize((mean.shape[-1], mean.shape[-2]), Image.BICUBIC)
            weight = torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255)
            weight = weight / weight.mean().clamp_min(1e-6)
        sample = None
        if self.latent_sampling_method == "once":
            sample = mean + std * torch.randn(mean.shape, generator=self.generator)
        elif self.latent_sampling_method == "deterministic":
            sample = mean
        caption = caption_of(path)
        entry = DatasetEntry(path, caption, mean, std if sample is None else None, sample, weight)
        if not (self.shuffle_tags or self.tag_drop_out):
            entry.cond_text = self.create_text(caption)
        return entry

    def create_text(self, caption: str) -> str:
        return make_text(self.rng.choice(self.lines), self.placeholder_token, caption, self.shuffle_tags,
                         self.tag_drop_out, self.rng)

    def latent_of(self, entry: DatasetEntry) -> torch.Tensor:
        if entry.latent_sample is not None:
            return entry.latent_sample
        return entry.latent_mean + entry.latent_std * torch.randn(entry.latent_mean.shape, generator=self.generator)

    def make_batch(self, entries: list[DatasetEntry]) -> Batch:
        texts = [entry.cond_text or self.create_text(entry.caption) for entry in entries]
        weights = torch.stack([e.weight for e in entries]) if all(e.weight is not None for e in entries) else None
        return Batch(torch.stack([self.latent_of(e) for e in entries]), texts, weights, [e.filename for e in entries])

    def epoch(self):
        """The batches of one epoch, in a new random order; same-size latents only share a batch."""
        order = torch.randperm(len(self.entries), generator=self.generator).tolist()
        groups: dict[tuple, list[DatasetEntry]] = {}
        for index in order:
            entry = self.entries[index]
            groups.setdefault(tuple(entry.latent_mean.shape), []).append(entry)
        batches = [group[i:i + self.batch_size] for group in groups.values()
                   for i in range(0, len(group) - self.batch_size + 1, self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield self.make_batch(batches[i])
