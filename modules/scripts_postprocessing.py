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
    def __init__(self):
        self.scripts: list[ScriptPostprocessing] | None = None

    def initialize_scripts(self, scripts_data) -> None:
        self.scripts = []
        for data in scripts_data:
            script = data.script_class()
            script.filename = data.path
            self.scripts.append(script)

    def scripts_in_preferred_order(self) -> list[ScriptPostprocessing]:
        """By the postprocessing_operation_order setting (names listed first, in that order), then by `order`."""
        from modules.shared_options import opts

        if self.scripts is None:
            from modules import scripts

            self.initialize_scripts(scripts.postprocessing_scripts_data)
        preferred = list(getattr(opts, "postprocessing_operation_order", None) or [])

        def key(script):
            return (preferred.index(script.name) if script.name in preferred else len(preferred), script.order, script.name or "")

        return sorted(self.scripts, key=key)

    def setup_ui(self) -> list:
        """Build every script's controls; returns the components whose values run() receives, in order."""
        inputs = []
        for script in self.scripts_in_preferred_order():
            script.controls = script.ui() or {}
            script.args_from = len(inputs)
            inputs += list(script.controls.values())
            script.args_to = len(inputs)
        return inputs

    def script_kwargs(self, script: ScriptPostprocessing, args) -> dict:
        """This script's slice of the flat argument list, as keyword arguments named like its controls."""
        return dict(zip((script.controls or {}).keys(), args[script.args_from:script.args_to]))

    def run(self, pp: PostprocessedImage, args) -> None:
        """Run process_firstpass of every script, then process; a failing script is logged and skipped."""
        scripts_ = [s for s in self.scripts_in_preferred_order() if s.controls is not None]
        for hook in ("process_firstpass", "process"):
            for script in scripts_:
                if pp.disable_processing:
                    return
                try:
                    getattr(script, hook)(pp, **self.script_kwargs(script, args))
                except Exception:
                    log.exception("Error running %s of postprocessing script %s", hook,
                                  os.path.basename(script.filename or script.name or "?"))

    def create_args_for_run(self, scripts_args: dict) -> list:
        """The flat argument list from {script name: {arg name: value}} (the API's form); missing args keep defaults."""
        args = []
        for script in self.scripts_in_preferred_order():
            given = scripts_args.get(script.name, {})
            for name, component in (script.controls or {}).items():
                args.append(given.get(name, getattr(component, "value", None)))
        return args

    def image_changed(self) -> None:
        for script in self.scripts_in_preferred_order():
            script.image_changed()
