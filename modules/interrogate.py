"""Interrogate CLIP (A1111's modules.interrogate): a BLIP caption of the image, then the best lines of each category
file ranked by CLIP ViT-L/14, appended as "caption, item, item, ...".

Models (transformers' layouts), each downloaded once into its folder on first use, file by file:
- BLIP: Salesforce/blip-image-captioning-base (BLIP base trained with CapFilt-L, as A1111's
  model_base_caption_capfilt_large.pth) into models/BLIP/blip-image-captioning-base;
- CLIP: openai/clip-vit-large-patch14 (A1111's "ViT-L/14") into models/CLIP/clip-vit-large-patch14.
Categories are the .txt files of the interrogate/ folder: one item per line; "name.topN.txt" contributes N items.
"""
from __future__ import annotations

import functools
import os
import re
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules import devices, interrogate_files, job_context, paths_internal
from modules.first_start import endpoint_url

Category = namedtuple("Category", ["name", "topn", "items"])
re_topn = re.compile(r"\.top(\d+)\.")
BLIP_REPO = "Salesforce/blip-image-captioning-base"
CLIP_REPO = "openai/clip-vit-large-patch14"
BLIP_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
CLIP_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
              "special_tokens_map.json")
BLIP_PROMPT = "a picture of "  # BLIP's captioning prompt, cut from the caption (A1111's BLIP does the same)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # both models were trained on images normalised like CLIP's
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_BATCH = 256  # category lines encoded at once


def content_dir() -> str:
    return os.path.join(paths_internal.script_path, "interrogate")


def category_types() -> list[str]:
    return sorted(f.stem for f in Path(content_dir()).glob("*.txt"))


def model_dir(kind: str, repo: str) -> str:
    return os.path.join(paths_internal.models_path, kind, repo.split("/")[-1])


def fetch_model(kind: str, repo: str, files: tuple[str, ...]) -> str:
    """The model's folder, with every file it needs (missing ones downloaded from the Hugging Face repository)."""
    folder = model_dir(kind, repo)
    for name in files:
        interrogate_files.require(f"{endpoint_url()}/{repo}/resolve/main/{name}", folder, name, f"Interrogate CLIP ({kind})")
    return folder


def to_tensor(image: Image.Image, side: int, crop: bool) -> torch.Tensor:
    """1x3xHxW normalised pixels: resized to side x side (BLIP), or shorter side to `side` then centre-cropped (CLIP)."""
    image = image.convert("RGB")
    if crop:
        scale = side / min(image.size)
        image = image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))), Image.BICUBIC)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    else:
        image = image.resize((side, side), Image.BICUBIC)
    pixels = (np.asarray(image, dtype=np.float32) / 255 - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(pixels.transpose(2, 0, 1)).unsqueeze(0)


@functools.lru_cache(maxsize=8)
def read_category(path: str, mtime: float) -> tuple[str, ...]:
    with open(path, encoding="utf8") as file:
        return tuple(line.strip() for line in file if line.strip())


class InterrogateModels:
    blip_model = None
    blip_tokenizer = None
    clip_model = None
    clip_tokenizer = None
    dtype = None

    def __init__(self, content_dir: str | None = None):
        self.content_dir = content_dir
        self._text_features: dict[tuple[str, ...], torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return devices.get_device_for("interrogate")

    def model_dtype(self) -> torch.dtype:
        return torch.float32 if self.device.type == "cpu" else devices.dtype

    def categories(self) -> list[Category]:
        settings = job_context.settings()
        skip = set(settings.interrogate_clip_skip_categories or [])
        found = []
        for path in sorted(Path(self.content_dir or content_dir()).glob("*.txt")):
            if path.stem in skip:
                continue
            match = re_topn.search(path.name)
            found.append(Category(path.stem, int(match.group(1)) if match else 1,
                                  list(read_category(str(path), path.stat().st_mtime))))
        return found

    def load_blip_model(self):
        from transformers import AutoTokenizer, BlipForConditionalGeneration

        folder = fetch_model("BLIP", BLIP_REPO, BLIP_FILES)
        self.blip_tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=self.model_dtype()).eval()

    def load_clip_model(self):
        from transformers import CLIPModel, CLIPTokenizer

        folder = fetch_model("CLIP", CLIP_REPO, CLIP_FILES)
        self.clip_tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        return CLIPModel.from_pretrained(folder, local_files_only=True, dtype=self.model_dtype()).eval()

    def load(self) -> None:
        if self.blip_model is None:
            self.blip_model = self.load_blip_model()
        self.blip_model.to(self.device)
        if self.clip_model is None:
            self.clip_model = self.load_clip_model()
        self.clip_model.to(self.device)
        self.dtype = self.model_dtype()

    def send_clip_to_ram(self) -> None:
        if not job_context.settings().interrogate_keep_models_in_memory and self.clip_model is not None:
            self.clip_model.to(devices.cpu)

    def send_blip_to_ram(self) -> None:
        if not job_context.settings().interrogate_keep_models_in_memory and self.blip_model is not None:
            self.blip_model.to(devices.cpu)

    def unload(self) -> None:
        self.send_clip_to_ram()
        self.send_blip_to_ram()
        devices.torch_gc()

    def generate_caption(self, pil_image: Image.Image) -> str:
        """BLIP's caption of the image (the models loaded), with the settings' beams and lengths."""
        if self.blip_model is None:
            self.load()
        settings = job_context.settings()
        model = self.blip_model
        side = model.config.vision_config.image_size
        pixels = to_tensor(pil_image, side, crop=False).to(self.device, next(model.parameters()).dtype)
        prompt = self.blip_tokenizer(BLIP_PROMPT.strip(), return_tensors="pt").input_ids.to(self.device)
        with torch.inference_mode():
            ids = model.generate(pixel_values=pixels, input_ids=prompt, do_sample=False,
                                 num_beams=int(settings.interrogate_clip_num_beams),
                                 min_length=int(settings.interrogate_clip_min_length),
                                 max_length=int(settings.interrogate_clip_max_length))
        caption = self.blip_tokenizer.decode(ids[0], skip_special_tokens=True).strip()
        prefix = BLIP_PROMPT.strip()
        return caption[len(prefix):].strip() if caption.startswith(prefix) else caption

    def image_features(self, pil_image: Image.Image) -> torch.Tensor:
        model = self.clip_model
        pixels = to_tensor(pil_image, model.config.vision_config.image_size, crop=True)
        with torch.inference_mode():
            features = model.get_image_features(pixel_values=pixels.to(self.device, next(model.parameters()).dtype)).pooler_output
        return (features / features.norm(dim=-1, keepdim=True)).float()

    def text_features(self, texts: tuple[str, ...]) -> torch.Tensor:
        """Normalised CLIP features of the lines, kept for the next image (categories rarely change)."""
        if texts not in self._text_features:
            chunks = []
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.clip_tokenizer(list(texts[start:start + TEXT_BATCH]), padding=True, truncation=True,
                                             max_length=self.clip_model.config.text_config.max_position_embeddings,
                                             return_tensors="pt").to(self.device)
                with torch.inference_mode():
                    chunks.append(self.clip_model.get_text_features(**tokens).pooler_output.float().cpu())
            features = torch.cat(chunks)
            self._text_features[texts] = features / features.norm(dim=-1, keepdim=True)
        return self._text_features[texts]

    def rank(self, image_features: torch.Tensor, text_array, top_count: int = 1) -> list[tuple[str, float]]:
        """The top_count lines most like the image, each with its share of the softmax in percent (A1111's)."""
        limit = int(job_context.settings().interrogate_clip_dict_limit)
        texts = tuple(text_array[:limit] if limit else text_array)
        if not texts:
            return []
        top_count = min(top_count, len(texts))
        text_features = self.text_features(texts)
        similarity = (100.0 * image_features.cpu() @ text_features.T).softmax(dim=-1).mean(dim=0)
        probs, labels = similarity.topk(top_count)
        return [(texts[int(i)], float(p) * 100) for p, i in zip(probs, labels)]

    def interrogate(self, pil_image: Image.Image) -> str:
        state = job_context.state()
        state.begin(job="interrogate")
        try:
            self.load()
            caption = self.generate_caption(pil_image)
            self.send_blip_to_ram()
            devices.torch_gc()
            result = caption
            features = self.image_features(pil_image)
            with_ranks = job_context.settings().interrogate_return_ranks
            for category in self.categories():
                for match, score in self.rank(features, category.items, top_count=category.topn):
                    result += f", ({match}:{score / 100:.3f})" if with_ranks else f", {match}"
            return result
        finally:
            self.unload()
            state.end()


interrogator = InterrogateModels()
