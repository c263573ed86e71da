"""Gradio 3 idioms of real extensions: subclasses of our components made in a script file (sd-webui-ar's
`class ResButton(ToolButton)`), an InputAccordion subclass, Gradio 3 arguments (controlnet's `gr.Image(source=...,
tool="sketch", brush_radius=20)`), and `gr.Dropdown.update(...)`."""
import logging
import textwrap

import gradio as gr

from modules import gradio_compat, scripts

SCRIPT = '''
    import gradio as gr
    from modules.ui_components import InputAccordion, ToolButton


    class ResButton(ToolButton):
        def __init__(self, res=(512, 512), **kwargs):
            super().__init__(**kwargs)
            self.w, self.h = res

        def reset(self):
            return [self.w, self.h]


    class EnableAccordion(InputAccordion):
        pass
'''


def test_subclasses_made_in_a_script_file_render_as_ours(tmp_path):
    gradio_compat.install()
    path = tmp_path / "ar_script.py"
    path.write_text(textwrap.dedent(SCRIPT))
    module = scripts.load_module(str(path))  # as scripts load: a module not in sys.modules
    with gr.Blocks() as demo:
        button = module.ResButton(res=(640, 480), value="640x480", elem_id="ar_res")
        with module.EnableAccordion(False, label="Extra", elem_id="ext_acc") as enabled:
            gr.Textbox(elem_id="inside")
    config = demo.get_config_file()
    types = {c["props"].get("elem_id"): c["type"] for c in config["components"]}
    assert types["ar_res"] == "button" and button.reset() == [640, 480]
    assert types["ext_acc"] == "accordion" and types["ext_acc-checkbox"] == "checkbox"
    assert enabled.value is False and enabled.accordion.elem_id == "ext_acc"
    assert not (tmp_path / "ar_script.pyi").exists()  # Gradio writes no stubs into extension folders


def test_gradio3_arguments_are_accepted_with_one_warning_each(caplog):
    gradio_compat.install()
    gradio_compat._warned.clear()
    with caplog.at_level(logging.WARNING, logger="atelier"), gr.Blocks():
        images = [gr.Image(source="upload", brush_radius=20, type="numpy", tool="sketch") for _ in range(2)]
        video = gr.Video(format="mp4", source="upload")
    assert images[0].sources == ["upload"] and images[0].type == "numpy" and video.sources == ["upload"]
    warnings = [record.getMessage() for record in caplog.records]
    assert sorted(warnings) == ["gr.Image(brush_radius=...) is a Gradio 3 argument that Gradio 6 does not have: ignored",
                                "gr.Image(tool=...) is a Gradio 3 argument that Gradio 6 does not have: ignored"]


def test_gradio3_update_class_methods():
    gradio_compat.install()
    assert gr.Dropdown.update(choices=["a", "b"]) == {"__type__": "update", "choices": ["a", "b"]}
    assert gr.Textbox.update("text", visible=False) == {"__type__": "update", "value": "text", "visible": False}
    assert gr.Checkbox.update(value=None) == {"__type__": "update", "value": None}
    assert gr.Accordion.update(open=True) == {"__type__": "update", "open": True}


def test_gradio4_show_button_flags_become_gradio6_buttons():
    gradio_compat.install()
    with gr.Blocks():
        copyable = gr.Textbox(show_copy_button=True)  # supermerger's merge log
        plain = gr.Textbox(show_copy_button=False)
        gallery = gr.Gallery(show_download_button=True, show_fullscreen_button=False)
    assert copyable.buttons == ["copy"] and "copy" not in (plain.buttons or []) and gallery.buttons == ["download"]


def test_blocks_made_with_visible_false_are_in_the_page_hidden():
    """Gradio 3 rendered visible=False blocks hidden in the page; sd-dynamic-prompts' wildcards tab finds its hidden
    textbox and button there. Gradio 6 leaves visible=False out of the page and renders visible="hidden" so."""
    gradio_compat.install()
    with gr.Blocks() as demo:
        message = gr.Textbox(visible=False, elem_id="hidden_message")
        button = gr.Button(visible=False, elem_id="hidden_button")
        with gr.Column(visible=False, elem_id="hidden_column"):
            gr.Textbox(elem_id="inside_hidden_column")
        shown = gr.Textbox(elem_id="shown")
    assert message.visible == button.visible == "hidden" and shown.visible is True
    props = {c["props"].get("elem_id"): c["props"] for c in demo.get_config_file()["components"]}
    assert props["hidden_message"]["visible"] == props["hidden_column"]["visible"] == "hidden"
    assert props["shown"]["visible"] is True
