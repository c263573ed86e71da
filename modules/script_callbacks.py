"""The extension API's callbacks (A1111's modules.script_callbacks): on_* registers, *_callback fires.

Each registration remembers the file that made it, so a script's callbacks can be removed when it is reloaded, and
gets A1111's name `<extension or "base">/<script file>/<category>[/<name>]`. A category's callbacks run in registration
order, moved by the extensions' metadata.ini `[callbacks/<name>]` Before/After, then by the user's
`prioritized_callbacks_<category>` setting (names listed there run first); the order is cached until either changes.
A callback that raises is logged with that file name and the others still run.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modules import dependency_order, extensions, job_context

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


@dataclass
class CallbackOrderInfo:
    """One `[callbacks/<name>]` section of an extension's metadata.ini: callback `name` runs before the callbacks
    named in `before` and after those in `after`."""

    name: str
    before: list[str]
    after: list[str]


CALLBACK_KINDS = (
    "app_started", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings", "before_image_saved", "image_saved",
    "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "before_component", "after_component",
    "image_grid", "infotext_pasted", "script_unloaded", "before_ui", "on_reload", "list_optimizers", "list_unets",
    "before_token_counter",
)
callback_map: dict[str, list[ScriptCallback]] = {f"callbacks_{kind}": [] for kind in CALLBACK_KINDS}
ordered_callbacks_map: dict[str, list[ScriptCallback]] = {}  # category -> its callbacks in effective order
_ordered_from: dict[str, tuple] = {}  # category -> what its cached order was computed from


def caller_filename() -> str:
    """The file of the first frame outside this module: the script that registers or removes callbacks."""
    here = os.path.abspath(__file__)
    for frame in inspect.stack()[1:]:
        if os.path.abspath(frame.filename) != here:
            return frame.filename
    return "unknown file"


def find_extension(filename: str) -> extensions.Extension | None:
    """The listed extension whose folder holds `filename`, or None (a built-in script or a test)."""
    path = os.path.realpath(filename)
    for ext in extensions.extensions:
        if path.startswith(os.path.realpath(ext.path) + os.sep):
            return ext
    return None


def add_callback(callbacks: list[ScriptCallback], fun: Callable, *, name: str | None = None, category: str = "unknown",
                 filename: str | None = None) -> None:
    """Append `fun` to `callbacks` under A1111's unique name; `filename` defaults to the registering file."""
    filename = filename or caller_filename()
    extension = find_extension(filename)
    callback_name = f"{extension.canonical_name if extension else 'base'}/{os.path.basename(filename)}/{category}"
    if name is not None:
        callback_name += f"/{name}"
    unique, index = callback_name, 0
    while any(c.name == unique for c in callbacks):
        index += 1
        unique = f"{callback_name}-{index}"
    callbacks.append(ScriptCallback(filename, fun, unique))


def _register(category: str, fun: Callable, name: str | None) -> None:
    add_callback(callback_map[f"callbacks_{category}"], fun, name=name, category=category, filename=caller_filename())


def callbacks(kind: str) -> list[ScriptCallback]:
    return callback_map[f"callbacks_{kind}"]


def enumerate_callbacks():
    """(category, registered callbacks) of every category, in A1111's category names."""
    for key, registered in callback_map.items():
        yield key.removeprefix("callbacks_"), registered


def parse_names(text: str) -> list[str]:
    """Callback names separated by commas and/or spaces, as written (names keep their case)."""
    return [item for item in re.split(r"[,\s]+", text.strip()) if item]


def callback_order_instructions(ext: extensions.Extension) -> list[CallbackOrderInfo]:
    """The `[callbacks/<name>]` sections of an extension's metadata.ini; a section about another extension's callback
    is ignored with a warning (an extension orders only its own callbacks)."""
    found = []
    config = ext.metadata.config
    for section in config.sections():
        if not section.startswith("callbacks/"):
            continue
        name = section.removeprefix("callbacks/")
        if not name.startswith(ext.canonical_name + "/"):
            log.warning("Callback order section for extension %s is referencing the wrong extension: %s",
                        ext.canonical_name, section)
            continue
        found.append(CallbackOrderInfo(name, parse_names(config.get(section, "Before", fallback="")),
                                       parse_names(config.get(section, "After", fallback=""))))
    return found


def sort_callbacks(category: str, unordered_callbacks: list[ScriptCallback], *,
                   enable_user_sort: bool = True) -> list[ScriptCallback]:
    """`unordered_callbacks` (in registration order) moved by the metadata.ini Before/After of every extension (callbacks
    asking to run before each other keep registration order, with a warning), then, with `enable_user_sort`, the
    names in the `prioritized_callbacks_<category>` setting first, in that setting's order."""
    index = {c.name: i for i, c in enumerate(unordered_callbacks)}
    after: list[set[int]] = [set() for _ in unordered_callbacks]  # after[i]: the callbacks that run before callback i
    for ext in extensions.extensions:
        for instruction in callback_order_instructions(ext):
            i = index.get(instruction.name)
            if i is None:
                continue
            after[i].update(index[name] for name in instruction.after if name in index)
            for name in instruction.before:
                if name in index:
                    after[index[name]].add(i)
            after[i].discard(i)
    _keep_cycles_in_registration_order(category, after, unordered_callbacks)
    ordered = [unordered_callbacks[i] for i in dependency_order.dependencies_first(after)]
    if not enable_user_sort:
        return ordered
    first = [name for name in dict.fromkeys(_prioritized(category)) if name in index]
    by_name = {c.name: c for c in ordered}
    return [by_name[name] for name in first] + [c for c in ordered if c.name not in first]


def _keep_cycles_in_registration_order(category: str, after: list[set[int]], listed: list[ScriptCallback]) -> None:
    """Drop the Before/After relations among callbacks that would each have to run before the other, and warn."""
    for group in dependency_order.drop_cycles(after):
        log.warning("metadata.ini Before/After of %s callbacks go in a circle (%s): they run in registration order.",
                    category, ", ".join(listed[j].name for j in group))


def _prioritized(category: str) -> list[str]:
    return list(getattr(job_context.settings(), f"prioritized_callbacks_{category}", None) or [])


def ordered_callbacks(category: str, unordered_callbacks: list[ScriptCallback] | None = None, *,
                      enable_user_sort: bool = True) -> list[ScriptCallback]:
    """The callbacks of `category` (or `unordered_callbacks`) in the order they run; computed once, again only when
    the callbacks or the user's priority setting change."""
    if unordered_callbacks is None:
        unordered_callbacks = callback_map.get(f"callbacks_{category}", [])
    if not enable_user_sort:
        return sort_callbacks(category, unordered_callbacks, enable_user_sort=False)
    source = (tuple(map(id, unordered_callbacks)), tuple(_prioritized(category)))  # cached objects stay alive: ids are unique
    if _ordered_from.get(category) != source:
        ordered_callbacks_map[category] = sort_callbacks(category, unordered_callbacks)
        _ordered_from[category] = source
    return ordered_callbacks_map[category]


def remove_current_script_callbacks() -> None:
    """Drop every callback registered by the calling file (a script does this before registering again)."""
    filename = caller_filename()
    for callback_list in callback_map.values():
        callback_list[:] = [c for c in callback_list if c.script != filename]
    _forget_orders()


def remove_callbacks_for_function(callback_func: Callable) -> None:
    for callback_list in callback_map.values():
        callback_list[:] = [c for c in callback_list if c.callback != callback_func]
    _forget_orders()


def clear_callbacks() -> None:
    for callback_list in callback_map.values():
        callback_list.clear()
    _forget_orders()


def _forget_orders() -> None:
    ordered_callbacks_map.clear()
    _ordered_from.clear()


def fire(kind: str, *args, **kwargs) -> list[Any]:
    """Call every callback of `kind` in its effective order; returns their results, a raising callback logged and left out."""
    results = []
    for c in list(ordered_callbacks(kind)):
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
    _register("app_started", callback, name)


def on_before_reload(callback, *, name=None):
    """callback() before the UI is reloaded."""
    _register("on_reload", callback, name)


def on_model_loaded(callback, *, name=None):
    """callback(sd_model) after a checkpoint is loaded."""
    _register("model_loaded", callback, name)


def on_ui_tabs(callback, *, name=None):
    """callback() returns [(gr.Blocks, title, elem_id)]: tabs added after the built-in ones, before Settings."""
    _register("ui_tabs", callback, name)


def on_ui_train_tabs(callback, *, name=None):
    """callback(UiTrainTabParams) while the Train tab is built: add tabs inside it."""
    _register("ui_train_tabs", callback, name)


def on_ui_settings(callback, *, name=None):
    """callback() before the Settings tab is built: call shared.opts.add_option(...) here."""
    _register("ui_settings", callback, name)


def on_before_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) before an image is written; image, filename and pnginfo may be changed."""
    _register("before_image_saved", callback, name)


def on_image_saved(callback, *, name=None):
    """callback(ImageSaveParams) after an image is written."""
    _register("image_saved", callback, name)


def on_extra_noise(callback, *, name=None):
    """callback(ExtraNoiseParams) before img2img's extra noise is added."""
    _register("extra_noise", callback, name)


def on_cfg_denoiser(callback, *, name=None):
    """callback(CFGDenoiserParams) before the model runs in each sampling step; its tensors may be changed."""
    _register("cfg_denoiser", callback, name)


def on_cfg_denoised(callback, *, name=None):
    """callback(CFGDenoisedParams) after the model ran, before the predictions are combined."""
    _register("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback, *, name=None):
    """callback(AfterCFGCallbackParams) after classifier-free guidance combined the predictions."""
    _register("cfg_after_cfg", callback, name)


def on_before_component(callback, *, name=None):
    """callback(component, **kwargs) before any Gradio component is created."""
    _register("before_component", callback, name)


def on_after_component(callback, *, name=None):
    """callback(component, **kwargs) after any Gradio component is created."""
    _register("after_component", callback, name)


def on_image_grid(callback, *, name=None):
    """callback(ImageGridLoopParams) before a grid is drawn; imgs, cols and rows may be changed."""
    _register("image_grid", callback, name)


def on_infotext_pasted(callback, *, name=None):
    """callback(infotext, params: dict) after an infotext is parsed for pasting; params may be changed."""
    _register("infotext_pasted", callback, name)


def on_script_unloaded(callback, *, name=None):
    """callback() before scripts are reloaded: undo what the script's module did."""
    _register("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    """callback() before the UI is built."""
    _register("before_ui", callback, name)


def on_list_optimizers(callback, *, name=None):
    """callback(list) appends cross-attention optimizers to the list."""
    _register("list_optimizers", callback, name)


def on_list_unets(callback, *, name=None):
    """callback(list) appends alternative UNets to the list."""
    _register("list_unets", callback, name)


def on_before_token_counter(callback, *, name=None):
    """callback(BeforeTokenCounterParams) before the UI counts a prompt's tokens; the prompt may be changed."""
    _register("before_token_counter", callback, name)
