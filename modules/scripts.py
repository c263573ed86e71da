"""The extension API's scripts (A1111's modules.scripts): the Script base class, loading script files, and the runners.

No Gradio here: the scripts' controls are built by the UI face (modules/ui_scripts.py), which the runners' UI methods
delegate to; the API learns the scripts' arguments from their args_spec declarations.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
import os
import re
import sys
import threading
from collections import namedtuple
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from modules import extensions, networks, paths_internal, script_callbacks, scripts_postprocessing
from modules.shared_options import opts

log = logging.getLogger(__name__)

AlwaysVisible = object()  # what show() returns for a script whose controls are always on the page


@dataclass
class PostprocessImageArgs:
    image: object


@dataclass
class PostprocessBatchListArgs:
    images: list


@dataclass
class PostprocessMaskOverlayArgs:
    index: int
    mask_for_overlay: object
    overlay_image: object


@dataclass
class PostSampleArgs:
    samples: object


class MaskBlendArgs:
    """One blend of the denoised latent with the init latent under the inpainting mask (A1111's fields): `mask` keeps
    the original (1 = keep), `nmask` is its complement; a script may replace `blended_latent`."""

    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.sigma = sigma
        self.is_final_blend = denoiser is None  # the blend after sampling, not one inside a step


@dataclass
class ScriptArg:
    label: str | None = None
    value: object = None
    minimum: object = None
    maximum: object = None
    step: object = None
    choices: list | None = None


@dataclass(frozen=True)
class ScriptArgSpec:
    """One argument of a script, declared without Gradio (see Script.args_spec): its name in run() and the hooks, and
    what /sdapi/v1/script-info tells about its control (A1111's fields: label, value, minimum, maximum, step, choices)."""

    name: str
    label: str = ""
    value: object = None  # the control's initial value
    minimum: object = None
    maximum: object = None
    step: object = None
    choices: Sequence | None = None
    index: bool = False  # the script receives the position of `value` in `choices` (a Gradio control with type="index")

    def default(self):
        """What the script receives before anyone touches the control."""
        return self.choices.index(self.value) if self.index else copy.copy(self.value)

    def info(self) -> ScriptArg:
        return ScriptArg(label=self.label, value=copy.copy(self.value), minimum=self.minimum, maximum=self.maximum,
                         step=self.step, choices=None if self.choices is None else list(self.choices))


@dataclass
class ScriptInfo:
    """What /sdapi/v1/script-info tells about a script."""

    name: str
    is_alwayson: bool
    is_img2img: bool
    args: list


class Script:
    """Base class of every script: override title() and whichever hooks the script needs."""

    name = None  # lower-cased title, set by the runner
    section = None  # the tab's section (A1111's UI category, e.g. "accordions") an always-on script's controls go in
    sorting_priority = 0  # always-on scripts' controls are placed by it, larger further down; equal ones in load order
    create_group = True
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    infotext_fields = None  # [(component, infotext key or function of the parsed dict)], used when pasting
    paste_field_names = None  # infotext keys copied by "Send to"
    api_info = None
    setup_for_ui_only = False  # True: setup() runs only for jobs started from the UI
    controls = None
    on_before_component_elem_id = None  # [(elem_id, callback)], filled by on_before_component
    on_after_component_elem_id = None

    def title(self):
        raise NotImplementedError(f"{type(self).__name__} has no title()")

    def ui(self, is_img2img):
        """Build this script's Gradio components; their values are the *args of every other method."""

    def show(self, is_img2img):
        """False: hidden; True: in the Script dropdown; AlwaysVisible: always shown and always run."""
        return True

    def args_spec(self, is_img2img) -> list[ScriptArgSpec] | None:
        """Atelier's addition: the arguments ui() returns controls for, in order, declared without Gradio, so the API
        learns their defaults without building a page. None (the default): undeclared; the API then builds ui() in a
        hidden page, only when it needs the arguments."""
        return None

    def run(self, p, *args):
        """Selectable scripts: do the job (usually via processing.process_images) and return a Processed."""

    def setup(self, p, *args):
        """Right after p is created, before anything else."""

    def before_process(self, p, *args):
        """First thing in process_images, before override_settings are applied."""

    def process(self, p, *args):
        """After seeds and prompts are prepared, before the batch loop."""

    def before_process_batch(self, p, *args, **kwargs):
        """Per batch, before extra networks are parsed; kwargs: batch_number, prompts, seeds, subseeds."""

    def after_extra_networks_activate(self, p, *args, **kwargs):
        """Per batch, after extra networks are applied; kwargs also have extra_network_data."""

    def process_batch(self, p, *args, **kwargs):
        """Per batch, before the conditioning is computed; kwargs: batch_number, prompts, seeds, subseeds."""

    def process_before_every_sampling(self, p, *args, **kwargs):
        """Right before each sampling run (first pass, hires pass); kwargs: x, noise, c, uc. Changes to p's CFG scale,
        refiner switch and sampler knobs (eta, s_churn, ...) apply to this run."""

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args):
        """Inpainting: each blend of the denoised latent with the init latent; mba.blended_latent may be replaced."""

    def post_sample(self, p, ps: PostSampleArgs, *args):
        """The batch's latents after sampling, before VAE decoding (ps.samples may be replaced)."""

    def postprocess_batch(self, p, *args, **kwargs):
        """The decoded batch as a tensor; kwargs: images, batch_number."""

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        """The decoded batch as a list pp.images that may be changed in place; kwargs: batch_number."""

    def postprocess_maskoverlay(self, p, ppmo: PostprocessMaskOverlayArgs, *args):
        """Inpainting: ppmo.overlay_image (the original with the masked area transparent) may be changed before it is
        laid over image ppmo.index; ppmo.mask_for_overlay is the mask."""

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        """Each image (pp.image, replaceable) before it is saved."""

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        """Each image after the inpainting overlay is composited."""

    def postprocess(self, p, processed, *args):
        """After everything, with the Processed result."""

    def before_hr(self, p, *args):
        """Before the hires pass."""

    def before_component(self, component, **kwargs):
        """Before any Gradio component is created; kwargs are its constructor's."""

    def after_component(self, component, **kwargs):
        """After any Gradio component is created."""

    def on_before_component(self, callback, *, elem_id):
        """Call callback(OnComponent) before the component with this elem_id is created."""
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        """Call callback(OnComponent) after the component with this elem_id is created."""
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id):
        """script_<tab>_<title>_<item>; the tab part only for a script shown alike in both tabs."""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{self._tab_prefix()}{title}_{item_id}"

    def _tab_prefix(self) -> str:
        """"txt2img_"/"img2img_" for a script shown alike in both tabs (its ids would clash), else ""."""
        if self.show(True) != self.show(False):
            return ""
        return "img2img_" if self.is_img2img else "txt2img_"


class ScriptBuiltinUI(Script):
    """Base of built-in always-on UI sections: ids without the script_ prefix, and setup() only for jobs from the UI."""

    setup_for_ui_only = True

    def show(self, is_img2img):
        return AlwaysVisible

    def elem_id(self, item_id):
        return f"{self._tab_prefix()}{item_id}"


@dataclass
class OnComponent:
    component: object


ScriptFile = extensions.ScriptFile
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])

scripts_data: list[ScriptClassData] = []
postprocessing_scripts_data: list[ScriptClassData] = []
current_basedir = paths_internal.script_path


def basedir() -> str:
    """The directory of the extension whose script is being loaded (the install dir for built-ins)."""
    return current_basedir


def list_scripts(scriptdirname: str, extension: str) -> list[ScriptFile]:
    """Built-in scripts from <install>/<scriptdirname>, then every active extension's, in load order."""
    builtin_dir = os.path.join(paths_internal.script_path, scriptdirname)
    files = [ScriptFile(paths_internal.script_path, name, os.path.join(builtin_dir, name))
             for name in sorted(os.listdir(builtin_dir))] if os.path.isdir(builtin_dir) else []
    files = [f for f in files if os.path.splitext(f.path)[1].lower() == extension and os.path.isfile(f.path)]
    return files + [f for ext in extensions.active() for f in ext.list_files(scriptdirname, extension)]


def load_module(path: str):
    """Import one file as its own module (not registered in sys.modules, as A1111 does)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE_CLASSES = (Script, ScriptBuiltinUI, scripts_postprocessing.ScriptPostprocessing)  # what scripts derive from


def register_scripts_from_module(module, scriptfile: ScriptFile) -> None:
    """Every Script / ScriptPostprocessing subclass the file's namespace holds, whether defined there or imported (as
    A1111: a file may re-export the Script of its extension's package), each class once."""
    registered = {data.script_class for data in (*scripts_data, *postprocessing_scripts_data)}
    for obj in list(vars(module).values()):
        if not isinstance(obj, type) or obj in BASE_CLASSES or obj in registered:
            continue
        if issubclass(obj, Script):
            scripts_data.append(ScriptClassData(obj, scriptfile.path, scriptfile.basedir, module))
        elif issubclass(obj, scripts_postprocessing.ScriptPostprocessing):
            postprocessing_scripts_data.append(ScriptClassData(obj, scriptfile.path, scriptfile.basedir, module))
        registered.add(obj)


# A1111's model code that extensions patch: Atelier runs diffusers models, so a script that imports it cannot load
LDM_PACKAGES = {"ldm": "the LDM model classes", "sgm": "the SGM (SDXL) model classes",
                "k_diffusion": "k-diffusion's wrappers of LDM models"}


def log_load_failure(scriptfile: ScriptFile, error: Exception) -> None:
    """One clear line for a script that needs A1111's LDM model code (its extension, the file, the missing piece);
    any other failure with its traceback."""
    package = (getattr(error, "name", None) or "").split(".")[0]
    if isinstance(error, ModuleNotFoundError) and package in LDM_PACKAGES:
        log.error("Extension %s: %s needs %s (%s), which Atelier's diffusers engine does not have; the script is not "
                  "loaded and the rest of the app is unaffected", os.path.basename(scriptfile.basedir),
                  scriptfile.filename, error.name, LDM_PACKAGES[package])
    else:
        log.error("Error loading script: %s", scriptfile.path, exc_info=error)


def load_scripts() -> None:
    """Import every script file and register the script classes it holds. Callbacks and runners start afresh: the
    modules register theirs again as they are imported."""
    global current_basedir, scripts_txt2img, scripts_img2img, scripts_postproc
    scripts_data.clear()
    postprocessing_scripts_data.clear()
    script_callbacks.clear_callbacks()
    scripts_txt2img, scripts_img2img = ScriptRunner(), ScriptRunner()
    scripts_postproc = scripts_postprocessing.ScriptPostprocessingRunner()
    networks.register_top_level_names()
    syspath = sys.path
    for scriptfile in extensions.script_load_order(list_scripts("scripts", ".py")):
        try:
            if scriptfile.basedir != paths_internal.script_path:
                sys.path = [scriptfile.basedir] + sys.path  # its modules and packages import by bare name (A1111)
            current_basedir = scriptfile.basedir
            register_scripts_from_module(load_module(scriptfile.path), scriptfile)
        except Exception as e:
            log_load_failure(scriptfile, e)
        finally:
            sys.path = syspath
            current_basedir = paths_internal.script_path


def wrap_call(func, filename, funcname, *args, default=None, **kwargs):
    """Call one script's function; an exception is logged with the script's file name and `default` returned."""
    try:
        return func(*args, **kwargs)
    except Exception:
        log.exception("Error calling: %s/%s", filename, funcname)
    return default


def initial_value(control):
    """The value a control hands to the scripts before anyone touches it; an index control (type="index") hands
    the index of its choice, as it does in the page."""
    value = getattr(control, "value", None)
    if getattr(control, "type", None) != "index" or value is None:
        return value
    values = [c[1] if isinstance(c, (list, tuple)) else c for c in getattr(control, "choices", None) or []]
    return values.index(value) if value in values else None


def script_arg(control) -> ScriptArg:
    """What /sdapi/v1/script-info tells about one control."""
    choices = getattr(control, "choices", None)
    if choices is not None:  # Gradio keeps choices as (label, value) pairs
        choices = [c[0] if isinstance(c, (list, tuple)) else c for c in choices]
    return ScriptArg(label=getattr(control, "label", None) or "", value=getattr(control, "value", None),
                     minimum=getattr(control, "minimum", None), maximum=getattr(control, "maximum", None),
                     step=getattr(control, "step", None), choices=choices)


class ScriptRunner:
    """The scripts of one tab (txt2img or img2img): their UI, the Script dropdown, and the hooks process_images calls.
    Each hook runs the scripts that define it in A1111's callback order, category `script_<hook>` (see
    script_callbacks.sort_callbacks)."""

    callback_names = (
        "before_process", "process", "before_process_batch", "after_extra_networks_activate", "process_batch",
        "postprocess", "postprocess_batch", "postprocess_batch_list", "post_sample", "on_mask_blend",
        "postprocess_image", "postprocess_maskoverlay", "postprocess_image_after_composite", "before_component",
        "after_component", "process_before_every_sampling", "before_hr",  # the last two: A1111 runs them unordered
    )

    def __init__(self):
        self.scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.titles: list[str] = []
        self.title_map: dict[str, Script] = {}
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]  # the Script dropdown, then every script's controls; their values are p.script_args
        self.arg_defaults = []  # p.script_args[1:] before anyone touches a control
        self.args_placed = False  # every script has its slice of p.script_args without a page (ensure_args)
        self.is_img2img = False
        self.on_before_component_elem_id: dict[str, list] = {}
        self.on_after_component_elem_id: dict[str, list] = {}
        self.placed_sections: set[str] = set()  # sections whose always-on scripts the tab has already placed
        self.callback_map: dict[str, tuple] = {}  # script_<hook> -> (what the order was computed from, the order)
        self.initialized = False  # the scripts are instantiated once per UI build: __init__ may register callbacks
        self.ui_created = False
        self.lock = threading.Lock()

    def initialize_scripts(self, is_img2img: bool) -> None:
        """Instantiate every loaded Script class for this tab and sort it into always-on or selectable."""
        self.scripts.clear()
        self.alwayson_scripts.clear()
        self.selectable_scripts.clear()
        self.is_img2img = is_img2img
        for data in scripts_data:
            script = data.script_class()
            script.filename = data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            visibility = wrap_call(script.show, script.filename, "show", is_img2img)
            if visibility is AlwaysVisible:
                script.alwayson = True
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        for script in self.scripts:
            script.name = (wrap_call(script.title, script.filename, "title") or script.filename).lower()
        self.title_map = {script.name: script for script in self.scripts}
        self.titles = [wrap_call(s.title, s.filename, "title") or f"{s.filename} [error]" for s in self.selectable_scripts]
        self.initialized = True

    def prepare_ui(self) -> None:
        """Before the tab is built (or its arguments placed): collect the scripts' elem_id-targeted component callbacks,
        and start the argument list afresh."""
        self.inputs = [None]
        self.arg_defaults = []
        self.args_placed = False
        self.infotext_fields, self.paste_field_names = [], []
        self.on_before_component_elem_id, self.on_after_component_elem_id = {}, {}
        self.placed_sections = set()
        for script in self.scripts:
            for elem_id, callback in script.on_before_component_elem_id or []:
                self.on_before_component_elem_id.setdefault(elem_id, []).append((callback, script))
            for elem_id, callback in script.on_after_component_elem_id or []:
                self.on_after_component_elem_id.setdefault(elem_id, []).append((callback, script))

    def unplaced_alwayson_scripts(self) -> list[Script]:
        """The always-on scripts no section call placed, in A1111's order for the scripts area: those of sections this
        tab has no place for, grouped by section in order of appearance, then those without a section; each group by
        sorting_priority."""
        rest = [s for s in self.alwayson_scripts if s.section is None or s.section not in self.placed_sections]
        groups = list(dict.fromkeys(s.section for s in rest if s.section is not None)) + [None]
        return sorted(rest, key=lambda s: (groups.index(s.section), s.sorting_priority))

    # building the controls is the UI face's (modules/ui_scripts.py); A1111's method names stay on the runner
    def setup_ui_for_section(self, section: str) -> None:
        ui_face().setup_ui_for_section(self, section)

    def setup_ui(self) -> list:
        return ui_face().setup_ui(self)

    def create_script_ui(self, script: Script) -> None:
        ui_face().create_script_ui(self, script)

    def place_args(self, script: Script, defaults: list, infos: list[ScriptArg]) -> None:
        """Give the script the next slice of p.script_args, starting at these defaults; /sdapi/v1/script-info tells
        `infos` (a script without arguments is not listed)."""
        script.args_from = len(self.arg_defaults) + 1
        self.arg_defaults += defaults
        script.args_to = len(self.arg_defaults) + 1
        script.api_info = ScriptInfo(name=script.name, is_alwayson=script.alwayson, is_img2img=script.is_img2img,
                                     args=infos) if infos else None

    def place_controls(self, script: Script, controls) -> None:
        """Place the arguments of the controls ui() built (none when it failed)."""
        script.controls = controls
        controls = controls or []
        self.place_args(script, [initial_value(c) for c in controls], [script_arg(c) for c in controls])

    def place_declared_args(self, script: Script) -> None:
        """Place a script's arguments from its args_spec; one that declares none has its ui() built in a hidden page."""
        spec = wrap_call(script.args_spec, script.filename, "args_spec", script.is_img2img)
        if spec is None:
            self.place_controls(script, ui_face().hidden_script_controls(script))
        else:
            self.place_args(script, [arg.default() for arg in spec], [arg.info() for arg in spec])

    def ensure_args(self, is_img2img: bool) -> ScriptRunner:
        """The API's way in: every script's slice of p.script_args and its defaults. From the page when it is built,
        else (--nowebui) from the scripts' declarations, in the order the scripts area has them."""
        with self.lock:
            if not (self.ui_created or self.args_placed):
                if not self.initialized:
                    self.initialize_scripts(is_img2img)
                self.prepare_ui()
                for script in [*self.unplaced_alwayson_scripts(), *self.selectable_scripts]:
                    self.place_declared_args(script)
                self.args_placed = True
        return self

    def list_scripts_for_method(self, method_name: str) -> list[Script]:
        """Component hooks go to every script of the tab, processing hooks to the always-on ones (A1111)."""
        return self.scripts if method_name in ("before_component", "after_component") else self.alwayson_scripts

    def create_ordered_callbacks_list(self, method_name: str, *, enable_user_sort: bool = True) -> list:
        """The scripts that define `method_name` as callbacks named `<ext>/<file>/script_<method>/<class>`, sorted."""
        category = f"script_{method_name}"
        callbacks: list = []
        for script in self.list_scripts_for_method(method_name):
            if getattr(type(script), method_name, None) is getattr(Script, method_name, None):
                continue
            script_callbacks.add_callback(callbacks, script, category=category, name=type(script).__name__,
                                          filename=script.filename)
        return script_callbacks.sort_callbacks(category, callbacks, enable_user_sort=enable_user_sort)

    def ordered_scripts(self, method_name: str) -> list[Script]:
        """The scripts to call for `method_name`, in order; sorted again only when the scripts or the setting change."""
        category = f"script_{method_name}"
        source = (tuple(map(id, self.list_scripts_for_method(method_name))),
                  tuple(getattr(opts, f"prioritized_callbacks_{category}", None) or []))
        cached = self.callback_map.get(category)
        if cached is None or cached[0] != source:
            cached = self.callback_map[category] = (source, [c.callback for c in self.create_ordered_callbacks_list(method_name)])
        return cached[1]

    def before_component(self, component, **kwargs) -> None:
        for callback, script in self.on_before_component_elem_id.get(kwargs.get("elem_id"), []):
            wrap_call(callback, script.filename, "on_before_component", OnComponent(component))
        for script in self.ordered_scripts("before_component"):
            wrap_call(script.before_component, script.filename, "before_component", component, **kwargs)

    def after_component(self, component, **kwargs) -> None:
        for callback, script in self.on_after_component_elem_id.get(getattr(component, "elem_id", None), []):
            wrap_call(callback, script.filename, "on_after_component", OnComponent(component))
        for script in self.ordered_scripts("after_component"):
            wrap_call(script.after_component, script.filename, "after_component", component, **kwargs)

    def default_args(self) -> list:
        """p.script_args with every argument at its default and no script chosen: what an API job starts from."""
        return [0, *self.arg_defaults]

    def find(self, name: str) -> Script | None:
        """A script of this tab by its title, in any case (the API's names)."""
        return self.title_map.get((name or "").lower())

    def run_alwayson(self, hook: str, p, *args, **kwargs) -> None:
        """Call `hook` of every always-on script that defines it, in callback order, with its own slice of
        p.script_args; one script's error is logged."""
        for script in self.ordered_scripts(hook):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, hook)(p, *args, *script_args, **kwargs)
            except Exception:
                log.exception("Error running %s: %s", hook, script.filename)

    def setup_scrips(self, p, *, is_ui: bool = True) -> None:
        for script in self.alwayson_scripts:
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script.setup(p, *p.script_args[script.args_from:script.args_to])
            except Exception:
                log.exception("Error running setup: %s", script.filename)

    def before_process(self, p) -> None:
        self.run_alwayson("before_process", p)

    def process(self, p) -> None:
        self.run_alwayson("process", p)

    def before_process_batch(self, p, **kwargs) -> None:
        self.run_alwayson("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs) -> None:
        self.run_alwayson("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs) -> None:
        self.run_alwayson("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs) -> None:
        self.run_alwayson("process_before_every_sampling", p, **kwargs)

    def defines(self, hook: str) -> bool:
        """Whether an always-on script overrides `hook`: the engine skips building a hook's arguments nobody reads."""
        return any(getattr(type(script), hook) is not getattr(Script, hook) for script in self.alwayson_scripts)

    def on_mask_blend(self, p, mba: MaskBlendArgs) -> None:
        self.run_alwayson("on_mask_blend", p, mba)

    def post_sample(self, p, ps: PostSampleArgs) -> None:
        self.run_alwayson("post_sample", p, ps)

    def postprocess_batch(self, p, images, **kwargs) -> None:
        self.run_alwayson("postprocess_batch", p, images=images, **kwargs)

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs) -> None:
        self.run_alwayson("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_maskoverlay(self, p, ppmo: PostprocessMaskOverlayArgs) -> None:
        self.run_alwayson("postprocess_maskoverlay", p, ppmo)

    def postprocess_image(self, p, pp: PostprocessImageArgs) -> None:
        self.run_alwayson("postprocess_image", p, pp)

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs) -> None:
        self.run_alwayson("postprocess_image_after_composite", p, pp)

    def postprocess(self, p, processed) -> None:
        self.run_alwayson("postprocess", p, processed)

    def before_hr(self, p) -> None:
        self.run_alwayson("before_hr", p)

    def run(self, p, *args):
        """Run the script chosen in the dropdown (args[0] is its index, 0 = None); None when no script takes the job."""
        script_index = args[0] if args else 0
        if not script_index:
            return None
        script = self.selectable_scripts[script_index - 1]
        return script.run(p, *args[script.args_from:script.args_to])


scripts_txt2img = ScriptRunner()
scripts_img2img = ScriptRunner()
scripts_postproc = scripts_postprocessing.ScriptPostprocessingRunner()
scripts_current: ScriptRunner | None = None  # the runner whose UI is being built (component hooks go to it)
ui_builder = None  # the face that builds scripts' controls with Gradio: modules.ui_scripts, set when it is imported


def ui_face():
    if ui_builder is None:
        raise RuntimeError("Building scripts' controls needs the UI face (modules.ui_scripts), which is not loaded")
    return ui_builder


def begin_ui_build() -> None:
    """What building the UI starts with, with a page or without (--nowebui): every script is instantiated for the
    txt2img, img2img and Extras runners, then the extensions add their settings. As A1111 builds the tabs' scripts
    before it asks for the extensions' tabs, callbacks a script registers in __init__ (on_ui_tabs, on_ui_settings, ...)
    take part."""
    scripts_txt2img.initialize_scripts(is_img2img=False)
    scripts_img2img.initialize_scripts(is_img2img=True)
    scripts_postproc.initialize_scripts(postprocessing_scripts_data)
    script_callbacks.ui_settings_callback()


@contextmanager
def building_ui(runner: ScriptRunner, is_img2img: bool):
    """While a generation tab is built: its runner's scripts (instantiated by begin_ui_build, or here for a tab built
    alone) are ready for setup_ui() and see every component made."""
    global scripts_current
    if not runner.initialized:
        runner.initialize_scripts(is_img2img=is_img2img)
    runner.prepare_ui()
    scripts_current = runner
    try:
        yield runner
    finally:
        scripts_current = None
