"""Gradio building blocks under A1111's names (extensions import them from modules.ui_components)."""
from __future__ import annotations

import inspect
import itertools

import gradio as gr


class _RenderedAsStock:
    """A subclass of a stock Gradio block that the page renders as that block.

    Gradio picks the browser component from the class name and reads the config keys from the class's __init__
    signature, so both must come from the stock class a subclass is built on (extensions subclass ours:
    `class ResButton(ToolButton)`, `class MyAccordion(InputAccordion)`).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__.__signature__ = inspect.signature(cls._stock_class().__init__)

    @classmethod
    def _stock_class(cls) -> type:
        return next(c for c in cls.__mro__ if c.__module__.startswith("gradio."))

    @classmethod
    def get_component_class_id(cls) -> str:
        # Gradio's own id reads the class's source file, which an extension script's module (not in sys.modules) lacks
        return cls._stock_class().get_component_class_id()

    def get_block_name(self) -> str:
        return self._stock_class().__name__.lower()

    def get_block_class(self) -> str:
        return self._stock_class().__name__.lower()


def _with_class(kwargs: dict, name: str) -> dict:
    classes = kwargs.pop("elem_classes", None) or []
    classes = [classes] if isinstance(classes, str) else list(classes)
    return {**kwargs, "elem_classes": [name, *classes]}


class FormComponent:
    """Gradio groups neighbouring form components into one box; these layout blocks join that box like inputs do."""

    def get_expected_parent(self):
        return gr.components.Form


class ToolButton(_RenderedAsStock, FormComponent, gr.Button):
    """A small square button with an emoji (🎲, ♻️, 🔄, ⇅) beside an input."""

    def __init__(self, value: str = "", **kwargs):  # named: Gradio's __init__ wrapper drops extra positional arguments
        super().__init__(value, **_with_class(kwargs, "tool"))


class ResizeHandleRow(_RenderedAsStock, gr.Row):
    """A row whose first two columns the user can resize by dragging the handle between them (javascript/resizeHandle.js)."""

    def __init__(self, **kwargs):
        super().__init__(**_with_class(kwargs, "resize-handle-row"))


class FormRow(_RenderedAsStock, FormComponent, gr.Row):
    pass


class FormColumn(_RenderedAsStock, FormComponent, gr.Column):
    pass


class FormGroup(_RenderedAsStock, FormComponent, gr.Group):
    pass


class InputAccordion(_RenderedAsStock, gr.Checkbox):
    """A checkbox that is also an accordion: `with InputAccordion(False, label="Refiner") as enable_refiner:`.

    Its value is the checkbox's. Gradio 6 cannot put an input into an accordion's header, so the checkbox is the
    accordion's first row and style.css marks the header of an enabled accordion. As in A1111, open and checked are
    one state: opening the header checks the box (javascript/inputAccordion.js), and a change of the value (the box,
    a paste) opens or closes the accordion. The accordion keeps the given elem_id (A1111's), the checkbox gets
    `<elem_id>-checkbox`.
    """

    _ids = itertools.count()

    def __init__(self, value: bool = False, *, label: str = "", elem_id: str | None = None, **kwargs):
        kwargs.pop("render", None)  # Gradio rebuilds components from their arguments when it applies an update
        self.accordion_id = elem_id or f"input-accordion-{next(InputAccordion._ids)}"
        self.accordion = gr.Accordion(label=label, open=bool(value), elem_id=self.accordion_id,
                                      elem_classes=["input-accordion"], render=False)
        super().__init__(value, label=label, elem_id=f"{self.accordion_id}-checkbox",
                         **_with_class(kwargs, "input-accordion-checkbox"), render=False)

    def __enter__(self):
        self.accordion.render()
        self.accordion.__enter__()
        self.render()
        self.change(fn=None, inputs=[self], js=f"(checked) => {{ inputAccordionShow({self.accordion_id!r}, checked); return []; }}",
                    show_progress="hidden")
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.accordion.__exit__(exc_type, exc_value, traceback)


class FormHTML(_RenderedAsStock, FormComponent, gr.HTML):
    pass


class DropdownMulti(_RenderedAsStock, FormComponent, gr.Dropdown):
    """A dropdown of several choices (A1111's)."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "multiselect": True})
