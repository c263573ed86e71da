"""Extras-tab scripts (A1111's modules.scripts_postprocessing): ScriptPostprocessing, PostprocessedImage and their runner."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class PostprocessedImageSharedInfo:
    """Values every script of one run can see, e.g. the size an upscaler aims at."""

    def __init__(self):
        self.target_width = None
        self.target_height = None


class PostprocessedImage:
    """One image going through the Extras scripts: `info` becomes its infotext, `extra_images` are saved beside it."""

    def __init__(self, image):
        self.image = image
        self.info = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images = []
        self.nametags = []
        self.disable_processing = False
        self.caption = None

    def get_suffix(self, used_suffixes=None) -> str:
        """A file-name suffix from the nametags, numbered when it is already used."""
        used_suffixes = {} if used_suffixes is None else used_suffixes
        suffix = "-".join(self.nametags)
        if suffix:
            suffix = "-" + suffix
        if suffix not in used_suffixes:
            used_suffixes[suffix] = 1
            return suffix
        for i in range(1, 100):
            numbered = f"{suffix}-{i}" if suffix else f"-{i}"
            if numbered not in used_suffixes:
                used_suffixes[numbered] = 1
                return numbered
        return suffix

    def create_copy(self, new_image, *, nametags=None, disable_processing=False) -> PostprocessedImage:
        copy = PostprocessedImage(new_image)
        copy.info = dict(self.info)
        copy.shared = self.shared
        copy.nametags = self.nametags + (nametags or [])
        copy.disable_processing = disable_processing
        copy.caption = self.caption
        return copy


class ScriptPostprocessing:
    """Base class of an Extras operation: ui() returns {arg name: component}; process(pp, **args) edits pp."""

    filename = None
    controls = None
    args_from = None
    args_to = None
    order = 1000  # lower runs first (unless the postprocessing_operation_order setting says otherwise)
    name = None
    group = None

    def ui(self):
        """Build the components; return a dict whose keys are the keyword arguments of process()."""

    def process(self, pp: PostprocessedImage, **args):
        """Change pp.image / pp.info."""

    def process_firstpass(self, pp: PostprocessedImage, **args):
        """Before any process(): set pp.shared values other scripts need (e.g. the target size)."""

    def image_changed(self):
        """The input image changed: drop anything cached for the old one."""


class ScriptPostprocessingRunner:
    """The Extras tab's extension scripts: their controls, their order and their run over each image."""

    def __init__(self):
        self.scripts: list[ScriptPostprocessing] | None = None
        self.ui_created = False

    def initialize_scripts(self, scripts_data) -> None:
        self.scripts = []
        for data in scripts_data:
            script = data.script_class()
            script.filename = data.path
            self.scripts.append(script)

    def scripts_in_preferred_order(self) -> list[ScriptPostprocessing]:
        """By the postprocessing_operation_order setting (names listed first, in that order), then by `order`; those
        named in the postprocessing_disable_in_extras setting (an extension may add it, as A1111 has) are left out."""
        from modules.shared_options import opts

        if self.scripts is None:
            from modules import scripts

            self.initialize_scripts(scripts.postprocessing_scripts_data)
        preferred = list(getattr(opts, "postprocessing_operation_order", None) or [])
        left_out = set(getattr(opts, "postprocessing_disable_in_extras", None) or [])

        def key(script):
            return (preferred.index(script.name) if script.name in preferred else len(preferred), script.order, script.name or "")

        return sorted((s for s in self.scripts if s.name not in left_out), key=key)

    # the controls are built by the UI face (modules/ui_scripts.py)
    def setup_ui(self) -> list:
        from modules import scripts

        return scripts.ui_face().setup_postprocessing_ui(self)

    def ensure_ui(self) -> None:
        """Without the page (--nowebui) every script gets its slots in the argument list from a hidden page."""
        if not self.ui_created and self.scripts_in_preferred_order():
            from modules import scripts

            scripts.ui_face().ensure_postprocessing_ui(self)

    def script_kwargs(self, script: ScriptPostprocessing, args) -> dict:
        """This script's slice of the flat argument list, as keyword arguments named like its controls."""
        return dict(zip((script.controls or {}).keys(), args[script.args_from:script.args_to]))

    def _runnable(self) -> list[ScriptPostprocessing]:
        return [s for s in self.scripts_in_preferred_order() if s.controls is not None]

    def _call(self, script: ScriptPostprocessing, hook: str, pp: PostprocessedImage, args) -> None:
        try:
            getattr(script, hook)(pp, **self.script_kwargs(script, args))
        except Exception:
            log.exception("Error running %s of postprocessing script %s", hook, script_label(script))

    def run_firstpass(self, pp: PostprocessedImage, args) -> None:
        """Every script's process_firstpass, before any work on the image; a failing script is logged and skipped."""
        for script in self._runnable():
            self._call(script, "process_firstpass", pp, args)

    def run_process(self, pp: PostprocessedImage, args) -> None:
        """Every script's process() on pp and on the extra images the scripts add (later scripts process those too,
        unless disable_processing); afterwards pp.extra_images holds them all. A failing script is logged and skipped."""
        all_images = [pp]
        for script in self._runnable():
            for image in list(all_images):
                if not image.disable_processing:
                    self._call(script, "process", image, args)
                all_images += [extra if isinstance(extra, PostprocessedImage) else image.create_copy(extra)
                               for extra in image.extra_images]
                image.extra_images = []
        pp.extra_images = all_images[1:]

    def run(self, pp: PostprocessedImage, args) -> None:
        """process_firstpass of every script, then process."""
        self.run_firstpass(pp, args)
        self.run_process(pp, args)

    def create_args_for_run(self, scripts_args: dict) -> list:
        """The flat argument list from {script name: {arg name: value}} (the API's form). A named script's missing
        arguments keep their defaults; a script not named gets None for each, as A1111's API gives it."""
        self.ensure_ui()
        scripts_ = self._runnable()
        args = [None] * max((s.args_to for s in scripts_), default=0)
        for script in scripts_:
            given = scripts_args.get(script.name)
            if given is None:
                continue
            for i, (name, component) in enumerate(script.controls.items()):
                args[script.args_from + i] = given.get(name, getattr(component, "value", None))
        return args

    def image_changed(self) -> None:
        """The Extras source image changed: tell every script; a failing one is logged."""
        for script in self.scripts_in_preferred_order():
            try:
                script.image_changed()
            except Exception:
                log.exception("Error running image_changed of postprocessing script %s", script_label(script))


def script_label(script: ScriptPostprocessing) -> str:
    """The script's file and name, for the log."""
    return f"{os.path.basename(script.filename or '?')} ({script.name})"
