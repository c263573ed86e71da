"""Gradio glue for extensions: the before/after component hooks, and the Gradio 3 idioms older extensions still use
(`_js=` on event listeners, `.style(...)`, `gr.Box`).

Gradio has no hook around component creation, so Component.__init__ is wrapped here: the one place Atelier patches
Gradio (the no-monkey-patching rule is about torch, diffusers and transformers). install() is idempotent.
"""
from __future__ import annotations

import functools

import gradio as gr
from gradio.blocks_events import BlocksEvents
from gradio.context import LocalContext, get_blocks_context

from modules import script_callbacks, scripts

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    wrap_component_init()
    for cls in {gr.blocks.Block, BlocksEvents, *all_subclasses(gr.blocks.Block)}:
        accept_js_alias(cls)
    gr.blocks.Block.style = style
    gr.Box = gr.Group


def all_subclasses(cls) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def style(self, *args, **kwargs):
    """Gradio 3's .style(...): its options are gone in Gradio 4+; the component is returned so chains still work."""
    return self


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


def before_component(component, **kwargs) -> None:
    if scripts.scripts_current is not None:
        scripts.scripts_current.before_component(component, **kwargs)
    script_callbacks.before_component_callback(component, **kwargs)


def after_component(component, **kwargs) -> None:
    script_callbacks.after_component_callback(component, **kwargs)
    if scripts.scripts_current is not None:
        scripts.scripts_current.after_component(component, **kwargs)
