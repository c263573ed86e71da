"""The extension API's callbacks (A1111's modules.script_callbacks): on_* registers, *_callback fires.

Each registration remembers the file that made it, so a script's callbacks can be removed when it is reloaded.
A callback that raises is logged with that file name and the others still run.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        """the PIL image; a callback may replace it"""
        self.p = p
        """the processing object, or None (e.g. Extras)"""
        self.filename = filename
        """the file it is (being) saved to; a before-save callback may change it"""
        self.pnginfo = pnginfo
        """{text chunk name: text}, written into the file's metadata"""


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise = noise
        self.x = x
        self.xi = xi


class CFGDenoiserParams:
    # Our CFGDenoiser's batch: x = latents (cond and uncond halves), image_cond = inpainting/img2img conditioning or None,
    # text_cond / text_uncond = the prompt embeddings of the two halves, denoiser = our CFGDenoiser.
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        """the model's predictions for the whole batch (cond and uncond), before they are combined"""
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        """the denoised latent after classifier-free guidance; a callback may replace it"""
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params):
        self.txt2img_preview_params = txt2img_preview_params


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


@dataclass
class ScriptCallback:
    script: str
    callback: Callable
    name: str | None = None


CALLBACK_KINDS = (
    "app_started", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings", "before_image_saved", "image_saved",
    "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "before_component", "after_component",
    "image_grid", "infotext_pasted", "script_unloaded", "before_ui", "on_reload", "list_optimizers", "list_unets",
    "before_token_counter",
)
callback_map: dict[str, list[ScriptCallback]] = {f"callbacks_{kind}": [] for kind in CALLBACK_KINDS}


def caller_filename() -> str:
    """The file of the first frame outside this module: the script that registers or removes callbacks."""
    here = os.path.abspath(__file__)
    for frame in inspect.stack()[1:]:
        if os.path.abspath(frame.filename) != here:
            return frame.filename
    return "unknown file"


def add_callback(kind: str, fun: Callable, name: str | None = None) -> None:
    filename = caller_filename()
    callbacks = callback_map[f"callbacks_{kind}"]
    base = f"{os.path.basename(filename)}/{name or getattr(fun, '__name__', 'callback')}"
    unique, n = base, 1
    while any(c.name == unique for c in callbacks):
        n += 1
        unique = f"{base}_{n}"
    callbacks.append(ScriptCallback(filename, fun, unique))


def callbacks(kind: str) -> list[ScriptCallback]:
    return callback_map[f"callbacks_{kind}"]


def remove_current_script_callbacks() -> None:
    """Drop every callback registered by the calling file (a script does this before registering again)."""
    filename = caller_filename()
    for callback_list in callback_map.values():
        callback_list[:] = [c for c in callback_list if c.script != filename]


def remove_callbacks_for_function(callback_func: Callable) -> None:
    for callback_list in callback_map.values():
        callback_list[:] = [c for c in callback_list if c.callback != callback_func]


def clear_callbacks() -> None:
    for callback_list in callback_map.values():
        callback_list.clear()


def fire(kind: str, *args, **kwargs) -> list[Any]:
    """Call every callback of `kind`; returns their results, a raising callback logged and left out."""
    results = []
    for c in list(callbacks(kind)):
        try:
            results.append(c.callback(*args, **kwargs))
        except Exception:
            log.exception("Error executing callback %s for %s", kind, c.script)
    return results


def app_started_callback(demo, app) -> None:
    fire("app_started", demo, app)


def app_reload_callback() -> None:
    fire("on_reload")


def model_loaded_callback(sd_model) -> None:
    fire("model_loaded", sd_model)


def ui_tabs_callback() -> list:
    """Every registered tab as (blocks, title, elem_id)."""
    return [tab for result in fire("ui_tabs") for tab in (result or [])]


def ui_train_tabs_callback(params: UiTrainTabParams) -> None:
    fire("ui_train_tabs", params)


def ui_settings_callback() -> None:
    fire("ui_settings")


def before_image_saved_callback(params: ImageSaveParams) -> None:
    fire("before_image_saved", params)


def image_saved_callback(params: ImageSaveParams) -> None:
    fire("image_saved", params)


def extra_noise_callback(params: ExtraNoiseParams) -> None:
    fire("extra_noise", params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    fire("cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    fire("cfg_denoised", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    fire("cfg_after_cfg", params)


def before_component_callback(component, **kwargs) -> None:
    fire("before_component", component, **kwargs)


def after_component_callback(component, **kwargs) -> None:
    fire("after_component", component, **kwargs)


def image_grid_callback(params: ImageGridLoopParams) -> None:
    fire("image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict) -> None:
    fire("infotext_pasted", infotext, params)


def script_unloaded_callback() -> None:
    fire("script_unloaded")


def before_ui_callback() -> None:
    fire("before_ui")


def list_optimizers_callback() -> list:
    """Each callback appends its optimizers to the list it is given."""
    res: list = []
    fire("list_optimizers", res)
    return res


def list_unets_callback() -> list:
    res: list = []
    fire("list_unets", res)
    return res


def before_token_counter_callback(params: BeforeTokenCounterParams) -> None:
    fire("before_token_counter", params)


def on_app_started(callback, *, name=None):
    """callback(demo: gr.Blocks or None, app: FastAPI) after the server's app is built: add routes here."""
    add_callback("app_started", callback, name)


def on_before_reload(callback, *, name=None):
    """callback() before the UI is reloaded."""
    add_callback("on_reload", callback, name)


def on_model_loaded(callback, *, name=None):
    """callback(sd_model) after a checkpoint is loaded."""
    add_callback("model_loaded", callback, name)


def on_ui_tabs(callback, *, name=None):
    """callback() returns [(gr.Blocks, title, elem_id)]: tabs added after the built-in ones, before Settings."""
    add_callback("ui_tabs", callback, name)


def on_ui_train_tabs(callback, *, name=None):
    """callback(UiTrainTabParams) while the Train tab is built: add tabs inside it."""
    add_callback("ui_train_tabs", callback, name)


def on_ui_settings(callback, *, name=None):
    """callback() before the Settings tab is built: call shared.opts.add_option(...) here."""
    add_callback("ui_settings", callback, name)


def on_before_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) before an image is written; image, filename and pnginfo may be changed."""
    add_callback("before_image_saved", callback, name)


def on_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) after an image is written."""
    add_callback("image_saved", callback, name)


def on_extra_noise(callback, *, name=None):
    """callback(ExtraNoiseParams) before img2img's extra noise is added."""
    add_callback("extra_noise", callback, name)


def on_cfg_denoiser(callback, *, name=None):
    """callback(CFGDenoiserParams) before the model runs in each sampling step; its tensors may be changed."""
    add_callback("cfg_denoiser", callback, name)


def on_cfg_denoised(callback, *, name=None):
    """callback(CFGDenoisedParams) after the model ran, before the predictions are combined."""
    add_callback("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback, *, name=None):
    """callback(AfterCFGCallbackParams) after classifier-free guidance combined the predictions."""
    add_callback("cfg_after_cfg", callback, name)


def on_before_component(callback, *, name=None):
    """callback(component, **kwargs) before any Gradio component is created."""
    add_callback("before_component", callback, name)


def on_after_component(callback, *, name=None):
    """callback(component, **kwargs) after any Gradio component is created."""
    add_callback("after_component", callback, name)


def on_image_grid(callback, *, name=None):
    """callback(ImageGridLoopParams) before a grid is drawn; imgs, cols and rows may be changed."""
    add_callback("image_grid", callback, name)


def on_infotext_pasted(callback, *, name=None):
    """callback(infotext, params: dict) after an infotext is parsed for pasting; params may be changed."""
    add_callback("infotext_pasted", callback, name)


def on_script_unloaded(callback, *, name=None):
    """callback() before scripts are reloaded: undo what the script's module did."""
    add_callback("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    """callback() before the UI is built."""
    add_callback("before_ui", callback, name)


def on_list_optimizers(callback, *, name=None):
    """callback(list) appends cross-attention optimizers to the list."""
    add_callback("list_optimizers", callback, name)


def on_list_unets(callback, *, name=None):
    """callback(list) appends alternative UNets to the list."""
    add_callback("list_unets", callback, name)


def on_before_token_counter(callback, *, name=None):
    """callback(BeforeTokenCounterParams) before the UI counts a prompt's tokens; the prompt may be changed."""
    add_callback("before_token_counter", callback, name)
