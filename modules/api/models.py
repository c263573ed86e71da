"""Request and response models of /sdapi/v1, generated from the processing classes' fields with A1111's API defaults."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from modules import postprocessing, processing

# Size, steps and batch limits: the UI's slider ranges in A1111; beyond them a request is refused with 422.
LIMITS = {"width": (64, 2048), "height": (64, 2048), "steps": (1, 150), "batch_size": (1, 8), "n_iter": (1, 100),
          "cfg_scale": (0, 30), "denoising_strength": (0, 1), "subseed_strength": (0, 1), "refiner_switch_at": (0, 1),
          "distilled_cfg_scale": (0, 30),  # Forge's slider range
          # img2img's choices by index (A1111): resize mode 0-3 (just resize, crop and resize, resize and fill, latent
          # upscale), masked content 0-3 (fill, original, latent noise, latent nothing), mask mode 0-1
          "resize_mode": (0, 3), "inpainting_fill": (0, 3), "inpainting_mask_invert": (0, 1),
          "mask_blur_x": (0, 64), "mask_blur_y": (0, 64), "mask_blur": (0, 64), "inpaint_full_res_padding": (0, 256)}

# Engine-side attributes that are not request fields (objects, or values the engine fills in).
INTERNAL_FIELDS = {"sd_model", "outpath_samples", "outpath_grids", "extra_generation_params", "seed_enable_extras",
                   "user", "model_manager", "all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "iteration",
                   "batch_index", "job_timestamp", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
                   "clip_skip", "is_api", "denoiser", "comments", "script_args", "hr_upscale_to_x", "hr_upscale_to_y",
                   "latent_mask", "mask", "init_images", "scripts", "scripts_setup_complete", "prompts", "negative_prompts",
                   "seeds", "subseeds"}

# Where the API's default differs from the processing class's (reference a1111.md §6.2, §14).
API_DEFAULTS = {"denoising_strength": 0.75}

# Fields the API has besides the processing attributes.
API_FIELDS: dict[str, tuple[Any, Any]] = {
    "sampler_index": (str, "Euler"),  # the old name of sampler_name, used when sampler_name is null
    "script_name": (str | None, None),
    "script_args": (list, []),
    "send_images": (bool, True),
    "save_images": (bool, False),
    "alwayson_scripts": (dict, {}),
    "force_task_id": (str | None, None),
    "infotext": (str | None, None),  # A1111 1.8+: a pasted infotext fills the fields the request does not give
}

API_TYPES = {"prompt": str, "negative_prompt": str, "styles": list[str] | None,
             "override_settings": dict[str, Any] | None}


def _field(name: str, annotation, default):
    low, high = LIMITS.get(name, (None, None))
    longest = processing.MAX_PROMPT_LENGTH if name in processing.PROMPT_FIELDS else None
    return annotation, Field(default=default, ge=low, le=high, max_length=longest)


def _processing_fields(cls) -> dict[str, tuple]:
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in INTERNAL_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()
        default = API_DEFAULTS.get(f.name, default)
        annotation = API_TYPES.get(f.name, hints[f.name] | None if default is None else hints[f.name])
        fields[f.name] = _field(f.name, annotation, default)
    return fields


def generate_model(name: str, cls, extra: dict[str, tuple] | None = None) -> type[BaseModel]:
    fields = _processing_fields(cls)
    fields.update({k: _field(k, t, d) for k, (t, d) in API_FIELDS.items()})
    fields.update(extra or {})
    return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)


StableDiffusionTxt2ImgProcessingAPI = generate_model("StableDiffusionTxt2ImgProcessingAPI",
                                                     processing.StableDiffusionProcessingTxt2Img)
StableDiffusionImg2ImgProcessingAPI = generate_model(
    "StableDiffusionImg2ImgProcessingAPI", processing.StableDiffusionProcessingImg2Img,
    {"init_images": (list[str], Field(..., min_length=1, description="base64 images")),
     "mask": (str | None, Field(default=None, description="base64 image; white = repaint"))})


class TextToImageResponse(BaseModel):
    images: list[str] | None = Field(default=None, description="base64 PNG images")
    parameters: dict
    info: str


class ImageToImageResponse(TextToImageResponse):
    pass


class ExtrasBaseRequest(BaseModel):
    resize_mode: int = Field(default=0, ge=0, le=1)
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_weight: float = Field(default=0, ge=0, le=1)
    upscaling_resize: float = Field(default=2, ge=1, le=8)
    upscaling_resize_w: int = Field(default=512, ge=1, le=8192)
    upscaling_resize_h: int = Field(default=512, ge=1, le=8192)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1)
    upscale_first: bool = False

    def options(self) -> postprocessing.PostprocessingOptions:
        return postprocessing.PostprocessingOptions(
            resize_mode=self.resize_mode, upscaling_resize=self.upscaling_resize, upscaling_resize_w=self.upscaling_resize_w,
            upscaling_resize_h=self.upscaling_resize_h, upscaling_crop=self.upscaling_crop, extras_upscaler_1=self.upscaler_1,
            extras_upscaler_2=self.upscaler_2, extras_upscaler_2_visibility=self.extras_upscaler_2_visibility,
            gfpgan_visibility=self.gfpgan_visibility, codeformer_visibility=self.codeformer_visibility,
            codeformer_weight=self.codeformer_weight, upscale_first=self.upscale_first)


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field(description="base64 image")


class ExtrasSingleImageResponse(BaseModel):
    image: str | None = None
    html_info: str


class FileData(BaseModel):
    data: str = Field(description="base64 image")
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(min_length=1)


class ExtrasBatchImagesResponse(BaseModel):
    images: list[str]
    html_info: str


class PNGInfoRequest(BaseModel):
    image: str


class PNGInfoResponse(BaseModel):
    info: str
    items: dict
    parameters: dict


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict
    current_image: str | None = None
    textinfo: str | None = None


class ProgressRequest(BaseModel):
    id_task: str | None = Field(default=None, description="the force_task_id given to txt2img/img2img")
    id_live_preview: int = Field(default=-1, description="id of the last preview received; a newer one is sent")
    live_preview: bool = Field(default=True, description="whether to send a live preview image")


class InternalProgressResponse(BaseModel):
    active: bool
    queued: bool
    completed: bool
    progress: float | None = Field(default=None, description="0..1, while active")
    eta: float | None = Field(default=None, description="seconds left, while active")
    live_preview: str | None = Field(default=None, description="a data: URI")
    id_live_preview: int | None = None
    textinfo: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float | None
    need_inner_model: bool | None


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


class RealesrganItem(BaseModel):
    name: str
    path: str | None
    scale: float | None


class SDModuleItem(BaseModel):
    model_name: str
    filename: str


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class HypernetworkItem(BaseModel):
    name: str
    path: str | None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None
    negative_prompt: str | None


class EmbeddingItem(BaseModel):
    step: int | None
    sd_checkpoint: str | None
    sd_checkpoint_name: str | None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict


class ScriptsList(BaseModel):
    txt2img: list[str] = []
    img2img: list[str] = []


class MemoryResponse(BaseModel):
    ram: dict
    cuda: dict
