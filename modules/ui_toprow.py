"""The prompt row of txt2img and img2img (A1111's ids): prompts, token counters, Generate/Interrupt/Skip, the tools
(↙️ paste, 🗑️ clear) and styles with their editor (🖌️)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from modules import (
    extra_networks,
    prompt_parser,
    script_callbacks,
    sd_hijack_clip,
    styles,
)
from modules.prompt_encoding import CHUNK
from modules.shared_options import opts
from modules.ui_components import ToolButton

PROMPT_HINT = "(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"
apply_style_symbol = "\U0001f4cb"  # 📋
save_style_symbol = "\U0001f4be"  # 💾
paste_symbol = "\u2199\ufe0f"  # ↙️
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
edit_styles_symbol = "\U0001f58c\ufe0f"  # 🖌️
copy_prompt_symbol = "\u2b07\ufe0f"  # ⬇️
restore_progress_symbol = "\U0001f300"  # 🌀
PASTE_TITLE = "Read generation parameters from prompt or last generation if prompt is empty into user interface."


@dataclass
class Toprow:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    token_counter: gr.HTML
    negative_token_counter: gr.HTML
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    styles: gr.Dropdown
    style_apply: ToolButton
    style_create: ToolButton
    paste: ToolButton  # wired by the page (it fills every control of the tab)
    clear_prompt: ToolButton
    prompt_image: gr.File  # a PNG dropped or pasted on the prompt (javascript/dragdrop.js); wired by the page
    style_editor: StyleEditor
    interrogate: ToolButton | None = None  # img2img only
    deepbooru: ToolButton | None = None
    restore_progress: ToolButton | None = None  # 🌀, shown by the page while it remembers an unfinished task
    prompt_container: gr.Column | None = None
    compact: bool = False  # compact_prompt_box: the prompts are placed by render_inline_prompts

    def render_inline_prompts(self) -> None:
        """In the compact layout, place the prompts (with tools and styles) here, in the controls column."""
        if self.compact:
            self.prompt_container.render()


@dataclass
class StyleEditor:
    """A1111's 🖌️ "Edit styles" dialog: choose or name a style, edit its texts, save or delete it."""

    open_button: ToolButton
    dialog: gr.Group
    selection: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    apply: ToolButton  # the main row's chosen styles into the prompts (as 📋)
    copy: ToolButton  # the main prompts into the edited style
    delete: gr.Button
    save: gr.Button
    close: gr.Button


def token_count(text: str, steps: int = 20) -> tuple[int, int]:
    """(tokens, tokens its 75-token chunks hold), as A1111's counter shows them (`3/75`): without comments and
    extra-network tags, for the longest prompt that prompt editing makes over `steps` steps."""
    text = text or ""
    if opts.enable_prompt_comments:
        text = prompt_parser.strip_comments(text)
    text, _ = extra_networks.parse_prompt(text)
    schedule = prompt_parser.get_learned_conditioning_prompt_schedules([text], max(int(steps or 1), 1))[0]
    return max((sd_hijack_clip.prompt_lengths(prompt) for _, prompt in schedule), key=lambda counted: counted[0])


def token_counter_html(text: str, steps: int = 20, chosen_styles: list[str] | None = None, *, is_positive: bool = True) -> str:
    """The counter of one prompt box: on_before_token_counter callbacks may change what is counted first; the chosen
    styles count too when opts.include_styles_into_token_counters (A1111)."""
    if opts.disable_token_counters:
        return ""
    params = script_callbacks.BeforeTokenCounterParams(text or "", steps, list(chosen_styles or []), is_positive=is_positive)
    script_callbacks.before_token_counter_callback(params)
    text = params.prompt
    if opts.include_styles_into_token_counters and params.styles:
        database = styles.prompt_styles()
        apply = database.apply_styles_to_prompt if params.is_positive else database.apply_negative_styles_to_prompt
        text = apply(text, params.styles)
    count, limit = token_count(text, params.steps)
    return f"<span class='token-count'>{count}/{limit}</span>"


def negative_token_counter_html(text: str, steps: int = 20, chosen_styles: list[str] | None = None) -> str:
    return token_counter_html(text, steps, chosen_styles, is_positive=False)


def style_names() -> list[str]:
    return list(styles.prompt_styles().styles)


def apply_styles(prompt: str, negative_prompt: str, chosen: list[str] | None):
    """📋: write the chosen styles into the prompt boxes and clear the choice (so they are not applied twice)."""
    database = styles.prompt_styles()
    chosen = chosen or []
    return (database.apply_styles_to_prompt(prompt or "", chosen),
            database.apply_negative_styles_to_prompt(negative_prompt or "", chosen), gr.update(value=[]))


def save_style(name: str | None, prompt: str, negative_prompt: str):
    """💾: the current prompts as a style named `name` (asked in the page); a style of that name is replaced."""
    name = (name or "").strip()
    if not name:
        raise gr.Error("A style needs a name")
    styles.prompt_styles().save_style(name, prompt or "", negative_prompt or "")
    return gr.update(choices=style_names())


def style_texts(name: str | None):
    """The edited style's texts when the dialog's choice names one; a new name keeps what is typed."""
    style = styles.prompt_styles().styles.get(name or "")
    if style is None:
        return gr.skip(), gr.skip()
    return style.prompt, style.negative_prompt


def save_edited_style(name: str | None, prompt: str, negative_prompt: str):
    """Save in the dialog: the style (new, or replaced in its own file); both style lists show it."""
    save_style(name, prompt, negative_prompt)
    names = style_names()
    return gr.update(choices=names), gr.update(choices=names, value=(name or "").strip())


def delete_edited_style(name: str | None):
    """Delete in the dialog (after the page's confirm; None when cancelled)."""
    if name is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    name = name.strip()
    if name not in styles.prompt_styles().styles:
        raise gr.Error(f"No style named {name!r}" if name else "Choose the style to delete")
    styles.prompt_styles().delete_style(name)
    names = style_names()
    return gr.update(choices=names), gr.update(choices=names, value=None), "", ""


def _create_style_editor(tabname: str) -> StyleEditor:
    open_button = ToolButton(edit_styles_symbol, elem_id=f"{tabname}_styles_edit_button")
    with gr.Group(visible=False, elem_id=f"{tabname}_styles_dialog", elem_classes=["styles-dialog"]) as dialog:
        with gr.Row():
            selection = gr.Dropdown(label="Styles", choices=style_names(), value=None, allow_custom_value=True,
                                    elem_id=f"{tabname}_styles_edit_select", scale=4)
            apply = ToolButton(apply_style_symbol, elem_id=f"{tabname}_style_apply_dialog")
            copy = ToolButton(copy_prompt_symbol, elem_id=f"{tabname}_style_copy")
        prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tabname}_edit_style_prompt")
        negative_prompt = gr.Textbox(label="Negative prompt", lines=3, elem_id=f"{tabname}_edit_style_neg_prompt")
        with gr.Row():
            delete = gr.Button("Delete", variant="stop", elem_id=f"{tabname}_edit_style_delete")
            save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_edit_style_save")
            close = gr.Button("Close", elem_id=f"{tabname}_edit_style_close")
    return StyleEditor(open_button, dialog, selection, prompt, negative_prompt, apply, copy, delete, save, close)


def _prompt_box(tabname: str, negative: bool):
    label = "Negative prompt" if negative else "Prompt"
    key = "neg_prompt" if negative else "prompt"
    with gr.Row(elem_id=f"{tabname}_{key}_row", elem_classes=["prompt-row"]):
        box = gr.Textbox(label=label, show_label=False, lines=3, elem_id=f"{tabname}_{key}", elem_classes=["prompt"],
                         placeholder=f"{label}\n{PROMPT_HINT}")
        counter = gr.HTML(f"<span class='token-count'>0/{CHUNK}</span>",
                          elem_id=f"{tabname}_{'negative_' if negative else ''}token_counter",
                          elem_classes=["token-counter"])
    return box, counter


def _tools_and_styles(tabname: str) -> tuple:
    with gr.Row(elem_id=f"{tabname}_tools", elem_classes=["prompt-tools"]):
        paste = ToolButton(paste_symbol, elem_id="paste")  # A1111's id, the same on both tabs
        clear_prompt = ToolButton(clear_prompt_symbol, elem_id=f"{tabname}_clear_prompt")
        interrogators = create_interrogate_buttons() if tabname == "img2img" else (None, None)
        restore_progress = ToolButton(restore_progress_symbol, elem_id=f"{tabname}_restore_progress")
    with gr.Row(elem_id=f"{tabname}_styles_row", elem_classes=["styles-row"]):
        chosen = gr.Dropdown(label="Styles", show_label=False, choices=style_names(), value=[], multiselect=True,
                             elem_id=f"{tabname}_styles", scale=4)
        style_apply = ToolButton(apply_style_symbol, elem_id=f"{tabname}_style_apply")
        style_create = ToolButton(save_style_symbol, elem_id=f"{tabname}_style_create")
        style_editor = _create_style_editor(tabname)
    return paste, clear_prompt, interrogators, restore_progress, chosen, style_apply, style_create, style_editor


def create_toprow(tabname: str) -> Toprow:
    """The row above a generation tab's controls; call `wire_toprow` once `steps` exists (the counters read it). With
    `compact_prompt_box` the row keeps only Generate: the prompts, tools and styles are made unplaced, for
    `Toprow.render_inline_prompts` to put at the top of the controls column (A1111's compact layout)."""
    compact = bool(opts.compact_prompt_box)
    with gr.Row(elem_id=f"{tabname}_toprow", elem_classes=["toprow", *(["toprow-compact"] if compact else [])]):
        with gr.Column(scale=6, elem_id=f"{tabname}_prompt_container", render=not compact) as prompt_container:
            prompt, counter = _prompt_box(tabname, negative=False)
            negative_prompt, negative_counter = _prompt_box(tabname, negative=True)
            if compact:
                tools = _tools_and_styles(tabname)
        with gr.Column(scale=1, elem_id=f"{tabname}_actions_column", min_width=160):
            with gr.Row(elem_id=f"{tabname}_generate_box", elem_classes=["generate-box"]):
                interrupt = gr.Button("Interrupt", elem_id=f"{tabname}_interrupt", visible=False, variant="stop")
                skip = gr.Button("Skip", elem_id=f"{tabname}_skip", visible=False)
                generate = gr.Button("Generate", elem_id=f"{tabname}_generate", variant="primary")
            if not compact:
                tools = _tools_and_styles(tabname)
        prompt_image = gr.File(label="", file_count="single", type="filepath", visible="hidden",
                               elem_id=f"{tabname}_prompt_image")
    paste, clear_prompt, interrogators, restore_progress, chosen, style_apply, style_create, style_editor = tools
    return Toprow(prompt, negative_prompt, counter, negative_counter, generate, interrupt, skip, chosen, style_apply,
                  style_create, paste, clear_prompt, prompt_image, style_editor, *interrogators,
                  restore_progress=restore_progress, prompt_container=prompt_container, compact=compact)


def create_interrogate_buttons() -> tuple[ToolButton, ToolButton]:
    """img2img's 📎 and 📦 (A1111's ids "interrogate" and "deepbooru"), in the tab's tools row."""
    return ToolButton("\U0001f4ce", elem_id="interrogate"), ToolButton("\U0001f4e6", elem_id="deepbooru")


def wire_toprow(toprow: Toprow, steps: gr.Slider) -> None:
    for box, counter, count in ((toprow.prompt, toprow.token_counter, token_counter_html),
                                (toprow.negative_prompt, toprow.negative_token_counter, negative_token_counter_html)):
        box.change(fn=count, inputs=[box, steps, toprow.styles], outputs=[counter], show_progress="hidden",
                   trigger_mode="always_last", queue=False)
    toprow.style_apply.click(fn=apply_styles, inputs=[toprow.prompt, toprow.negative_prompt, toprow.styles],
                             outputs=[toprow.prompt, toprow.negative_prompt, toprow.styles], show_progress="hidden")
    name = gr.Textbox(visible=False, elem_id=f"{toprow.prompt.elem_id}_style_name")  # filled by the page's prompt()
    toprow.style_create.click(fn=save_style, inputs=[name, toprow.prompt, toprow.negative_prompt], outputs=[toprow.styles],
                              js="(name, p, n) => [prompt('Style name:'), p, n]", show_progress="hidden")
    toprow.clear_prompt.click(fn=None, inputs=[toprow.prompt, toprow.negative_prompt],
                              outputs=[toprow.prompt, toprow.negative_prompt], show_progress="hidden",
                              js="(p, n) => confirm('Delete prompt?') ? ['', ''] : [p, n]")
    wire_style_editor(toprow)


def wire_style_editor(toprow: Toprow) -> None:
    editor = toprow.style_editor
    hidden = dict(show_progress="hidden", queue=False)
    editor.open_button.click(fn=lambda: (gr.update(visible=True), gr.update(choices=style_names())),
                             outputs=[editor.dialog, editor.selection], **hidden)
    editor.close.click(fn=lambda: gr.update(visible=False), outputs=[editor.dialog], **hidden)
    editor.selection.change(fn=style_texts, inputs=[editor.selection], outputs=[editor.prompt, editor.negative_prompt],
                            **hidden)
    editor.copy.click(fn=None, inputs=[toprow.prompt, toprow.negative_prompt],
                      outputs=[editor.prompt, editor.negative_prompt], js="(p, n) => [p, n]", show_progress="hidden")
    editor.apply.click(fn=apply_styles, inputs=[toprow.prompt, toprow.negative_prompt, toprow.styles],
                       outputs=[toprow.prompt, toprow.negative_prompt, toprow.styles], show_progress="hidden")
    editor.save.click(fn=save_edited_style, inputs=[editor.selection, editor.prompt, editor.negative_prompt],
                      outputs=[toprow.styles, editor.selection], show_progress="hidden")
    editor.delete.click(fn=delete_edited_style, inputs=[editor.selection],
                        outputs=[toprow.styles, editor.selection, editor.prompt, editor.negative_prompt],
                        js="(name) => confirm(`Delete style ${name}?`) ? (name || '') : null", show_progress="hidden")
