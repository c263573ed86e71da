"""Gradio glue for extensions: the before/after component hooks, and the Gradio 3 idioms older extensions still use
(`_js=` on event listeners, `.style(...)`, `gr.Box`, `gr.Dropdown.update(...)`, arguments such as `gr.Image(source=...,
tool=...)`).

Gradio has no hook around component creation, so Component.__init__ is wrapped here: the one place Atelier patches
Gradio (the no-monkey-patching rule is about torch, diffusers and transformers). install() is idempotent.
"""
from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr
from gradio import component_meta
from gradio.blocks_events import BlocksEvents
from gradio.context import LocalContext, get_blocks_context

from modules import script_callbacks, scripts

log = logging.getLogger("atelier")
_installed = False

# Gradio 3 arguments that Gradio 4+ dropped; a component given one ignores it (`source` becomes `sources`)
GRADIO3_ARGUMENTS = {"source", "tool", "brush_radius", "brush_color", "mask_opacity", "shape", "invert_colors",
                     "mirror_webcam", "show_share_button"}
# Gradio 4's show_*_button flags, which Gradio 6 folded into one `buttons=[...]` list
BUTTON_FLAGS = {"show_copy_button": "copy", "show_download_button": "download", "show_fullscreen_button": "fullscreen"}
_warned: set[tuple[str, str]] = set()


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    wrap_component_init()
    render_invisible_blocks()
    for cls in {gr.blocks.Block, BlocksEvents, *all_subclasses(gr.blocks.Block)}:
        accept_js_alias(cls)
    for cls in all_subclasses(gr.components.Component):
        if cls.__module__.startswith("gradio.") and "__init__" in vars(cls):
            cls.__init__ = accepting_gradio3_arguments(cls, cls.__init__)
    component_meta.create_or_modify_pyi = gradio_classes_only(component_meta.create_or_modify_pyi)
    gr.blocks.Block.style = style
    gr.blocks.Block.update = staticmethod(update)
    gr.Box = gr.Group


def all_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def gradio_classes_only(write_stubs):
    """Gradio writes typing stubs (.pyi) beside the source of every component class as it is defined; a class of an
    extension script (`class ResButton(ToolButton)`) has no source file Gradio can find (it raises), and nothing should
    be written into extension folders."""
    @functools.wraps(write_stubs)
    def write_gradio_stubs(component_class, *args, **kwargs):
        if component_class.__module__.startswith("gradio."):
            write_stubs(component_class, *args, **kwargs)

    return write_gradio_stubs


def style(self, *args, **kwargs):
    """Gradio 3's .style(...): its options are gone in Gradio 4+; the component is returned so chains still work."""
    return self


_NO_VALUE = object()


def update(value=_NO_VALUE, **props) -> dict:
    """Gradio 3's `gr.Dropdown.update(choices=...)` / `gr.Textbox.update("text")`: Gradio 4+'s gr.update."""
    if value is not _NO_VALUE:
        props["value"] = value
    return gr.update(**props)


def accepting_gradio3_arguments(cls, init):
    """cls's __init__, which ignores the Gradio 3 arguments it does not have (one warning each), takes Gradio 3's
    `source="upload"` as `sources=["upload"]` and Gradio 4's `show_copy_button=True` as `buttons=["copy"]`."""
    parameters = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return init

    @functools.wraps(init)
    def component_init(self, *args, **kwargs):
        if "buttons" in parameters:
            flags = {name: kwargs.pop(name) for name in BUTTON_FLAGS.keys() & kwargs.keys() - parameters.keys()}
            if any(flags.values()) and kwargs.get("buttons") is None:
                kwargs["buttons"] = [BUTTON_FLAGS[name] for name, on in flags.items() if on]
        for name in GRADIO3_ARGUMENTS & kwargs.keys() - parameters.keys():
            value = kwargs.pop(name)
            if name == "source" and "sources" in parameters and "sources" not in kwargs and value != "canvas":
                kwargs["sources"] = [value]
                continue
            if (cls.__name__, name) not in _warned:
                _warned.add((cls.__name__, name))
                log.warning("gr.%s(%s=...) is a Gradio 3 argument that Gradio %s does not have: ignored",
                            cls.__name__, name, gr.__version__.split(".")[0])
        return init(self, *args, **kwargs)

    return component_init


def accept_js_alias(cls) -> None:
    """Every event listener defined on cls takes Gradio 3's `_js=` as `js=`."""
    for name, listener in list(vars(cls).items()):
        if callable(listener) and getattr(listener, "__name__", "") == "event_trigger":
            setattr(cls, name, with_js_alias(listener))


def with_js_alias(listener):
    @functools.wraps(listener)
    def event_trigger(block, *args, _js=None, **kwargs):
        if _js is not None:
            kwargs.setdefault("js", _js)
        return listener(block, *args, **kwargs)

    return event_trigger


def wrap_component_init() -> None:
    original = gr.components.Component.__init__

    @functools.wraps(original)
    def component_init(self, *args, **kwargs):
        # only while a page is being built: components made inside an event handler are updates, not new controls
        building = get_blocks_context() is not None and not LocalContext.in_event_listener.get(False)
        if building:
            before_component(self, **kwargs)
        result = original(self, *args, **kwargs)
        if building:
            after_component(self, **kwargs)
        return result

    gr.components.Component.__init__ = component_init


def render_invisible_blocks() -> None:
    """Gradio 3 (A1111's) put a block made with visible=False into the page, hidden; extensions' scripts find such
    hidden textboxes and buttons and talk to the server through them (sd-dynamic-prompts' wildcards tab). Gradio 6
    leaves visible=False out of the page, and renders visible="hidden" as Gradio 3 did visible=False."""
    original = gr.blocks.Block.__init__

    @functools.wraps(original)
    def block_init(self, *args, visible=True, **kwargs):
        return original(self, *args, visible="hidden" if visible is False else visible, **kwargs)

    gr.blocks.Block.__init__ = block_init


def before_component(component, **kwargs) -> None:
    if scripts.scripts_current is not None:
        scripts.scripts_current.before_component(component, **kwargs)
    script_callbacks.before_component_callback(component, **kwargs)


def after_component(component, **kwargs) -> None:
    script_callbacks.after_component_callback(component, **kwargs)
    if scripts.scripts_current is not None:
        scripts.scripts_current.after_component(component, **kwargs)
