"""Request and response models of /sdapi/v1: the generation fields come from the parameter table
(modules/generation_parameters.py) with A1111's API defaults and ranges, the rest from the processing classes."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from modules import generation_parameters, postprocessing, processing

# Engine-side attributes that are not request fields (objects, or values the engine fills in).
INTERNAL_FIELDS = {"sd_model", "outpath_samples", "outpath_grids", "extra_generation_params", "seed_enable_extras",
                   "user", "model_manager", "all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "iteration",
                   "all_cfg_scales", "batch_index", "job_timestamp", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
                   "clip_skip", "is_api", "denoiser", "comments", "script_args", "hr_upscale_to_x", "hr_upscale_to_y",
                   "latent_mask", "mask", "init_images", "scripts", "scripts_setup_complete", "prompts", "negative_prompts",
                   "seeds", "subseeds"}

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

API_TYPES = {"override_settings": dict[str, Any] | None}  # request types of fields outside the parameter table


def _field(name: str, annotation, default, limits=None):
    low, high = limits or (None, None)
    longest = processing.MAX_PROMPT_LENGTH if name in processing.PROMPT_FIELDS else None
    return annotation, Field(default=default, ge=low, le=high, max_length=longest)


def _table_field(param: generation_parameters.Param) -> tuple:
    """A request field from the parameter table: A1111's API default and the API's range."""
    default = param.api_value
    annotation = param.api_type or param.type
    if default is None:
        annotation = annotation | None
    return _field(param.name, annotation, default, param.api_range)


def _processing_fields(cls, tab: str) -> dict[str, tuple]:
    """The table's parameters of the tab, then the processing class's other request fields."""
    fields = {p.name: _table_field(p) for p in generation_parameters.params_for(tab) if p.api}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in INTERNAL_FIELDS or f.name in fields:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        annotation = API_TYPES.get(f.name, hints[f.name] | None if default is None else hints[f.name])
        fields[f.name] = _field(f.name, annotation, default)
    return fields


def generate_model(name: str, cls, extra: dict[str, tuple] | None = None, tab: str = "txt2img") -> type[BaseModel]:
    fields = _processing_fields(cls, tab)
    fields.update({k: _field(k, t, d) for k, (t, d) in API_FIELDS.items()})
    fields.update(extra or {})
    return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)


def build() -> tuple[type[BaseModel], type[BaseModel]]:
    """The txt2img and img2img request models, made from the parameter table as it is now."""
    txt2img = generate_model("StableDiffusionTxt2ImgProcessingAPI", processing.StableDiffusionProcessingTxt2Img)
    img2img = generate_model(
        "StableDiffusionImg2ImgProcessingAPI", processing.StableDiffusionProcessingImg2Img,
        {"init_images": (list[str], Field(..., min_length=1, description="base64 images")),
         "mask": (str | None, Field(default=None, description="base64 image; white = repaint"))}, tab="img2img")
    return txt2img, img2img


StableDiffusionTxt2ImgProcessingAPI, StableDiffusionImg2ImgProcessingAPI = build()


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


class InterrogateRequest(BaseModel):
    image: str = Field(default="", title="Image", description="Image to work on, must be a Base64 string containing the image's data.")
    model: str = Field(default="clip", title="Model", description="The interrogate model used: clip or deepdanbooru.")


class InterrogateResponse(BaseModel):
    caption: str | None = Field(default=None, title="Caption", description="The generated caption for the image.")


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
