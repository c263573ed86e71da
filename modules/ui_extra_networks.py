"""The Extra Networks panel of a generation tab (A1111's modules.ui_extra_networks names and element ids).

Tabs of cards for Checkpoints, Textual Inversion, Hypernetworks and Lora, with preview thumbnails (name.png or
name.preview.png beside the file), search, sort and refresh. Clicking a card puts its syntax into the prompt box that
last had the focus (clicking again takes it out); a checkpoint card asks for that checkpoint instead. "Replace preview"
saves the image selected in the gallery as the card's thumbnail.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from modules import hypernetworks, sd_models, textual_inversion, ui_common
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
THUMBNAIL_SIZE = (256, 256)
SORT_ORDERS = ["Default", "Date Created", "Date Modified", "Name"]
SELECT_CHECKPOINT, REPLACE_PREVIEW = 0, 1  # what a card's `select` event asks for (its index)
refresh_symbol = "\U0001f504"  # 🔄


@dataclass
class ExtraNetworksItem:
    name: str
    filename: str
    prompt: str  # what clicking inserts (checkpoints: the title to switch to)
    search_terms: list[str] = field(default_factory=list)
    sd_version: str | None = None  # Lora cards: the SdVersion name the network was made for

    @property
    def preview(self) -> str | None:
        return find_preview(self.filename)

    def as_a1111_item(self) -> dict:
        """The card as A1111's list_items() yields it (prompt-all-in-one reads these keys)."""
        return {"name": self.name, "filename": self.filename, "prompt": json.dumps(self.prompt),
                "search_terms": list(self.search_terms), "preview": self.preview, "description": None,
                "local_preview": os.path.splitext(self.filename)[0] + ".png", "metadata": None,
                "sort_keys": {"default": self.name.lower(), "name": self.name.lower()}, "sd_version": self.sd_version}

    def sort_key(self, order: str):
        if order == "Date Created":
            return os.path.getctime(self.filename)
        if order == "Date Modified":
            return os.path.getmtime(self.filename)
        return self.name.lower()


class ExtraNetworksPage:
    """One tab of cards; `cards` reads the registry, `refresh` rescans the folder first."""

    title = ""
    inserts = True  # False: a click selects (checkpoints) rather than inserts

    @property
    def id_page(self) -> str:
        return self.title.lower().replace(" ", "_")

    @property
    def name(self) -> str:
        return self.title.lower()  # A1111's page name ("lora", "textual inversion")

    def refresh(self) -> None:
        raise NotImplementedError

    def cards(self) -> list[ExtraNetworksItem]:
        raise NotImplementedError

    def list_items(self) -> list[dict]:
        """A1111's: the cards as dicts of A1111's keys."""
        return [card.as_a1111_item() for card in self.cards()]


def multiplier_text() -> str:
    return f"{opts.extra_networks_default_multiplier:g}"


class ExtraNetworksPageCheckpoints(ExtraNetworksPage):
    title = "Checkpoints"
    inserts = False

    def refresh(self) -> None:
        sd_models.list_models(cmd_opts)

    def cards(self) -> list[ExtraNetworksItem]:
        return [ExtraNetworksItem(info.name_for_extra, info.filename, info.title, [info.name, info.shorthash or ""])
                for info in sd_models.checkpoint_registry.checkpoints_list.values()]


class ExtraNetworksPageTextualInversion(ExtraNetworksPage):
    title = "Textual Inversion"

    def refresh(self) -> None:
        textual_inversion.embedding_db().load_textual_inversion_embeddings(force_reload=True)

    def cards(self) -> list[ExtraNetworksItem]:
        db = textual_inversion.embedding_db()
        db.load_textual_inversion_embeddings()
        return [ExtraNetworksItem(e.name, e.filename, e.name, [e.name, e.shorthash or ""])
                for e in db.word_embeddings.values()]


class ExtraNetworksPageHypernetworks(ExtraNetworksPage):
    title = "Hypernetworks"

    def refresh(self) -> None:
        hypernetworks.list_hypernetworks()

    def cards(self) -> list[ExtraNetworksItem]:
        if not hypernetworks.hypernetworks:
            hypernetworks.list_hypernetworks()
        return [ExtraNetworksItem(name, path, f"<hypernet:{name}:{multiplier_text()}>", [name])
                for name, path in hypernetworks.hypernetworks.items()]


class ExtraNetworksPageLora(ExtraNetworksPage):
    title = "Lora"

    def refresh(self) -> None:
        networks.list_available_networks()

    def cards(self) -> list[ExtraNetworksItem]:
        if not networks.available_networks:
            networks.list_available_networks()
        items = []
        model = sd_models.model_manager.current if sd_models.model_manager is not None else None
        for entry in networks.available_networks.values():
            if not opts.lora_show_all and not networks.fits_model(entry, model):
                continue  # A1111: a Flux LoRA is hidden while an SD model is loaded, and the other way round
            alias = entry.get_alias(networks.forbidden_network_aliases)
            items.append(ExtraNetworksItem(entry.name, entry.filename, f"<lora:{alias}:{multiplier_text()}>",
                                           [entry.name, entry.alias, entry.shorthash or ""], entry.sd_version.name))
        return items


extra_pages: list[ExtraNetworksPage] = []


def register_page(page: ExtraNetworksPage) -> None:
    """Add a tab of cards (extensions register theirs before the UI is built)."""
    extra_pages.append(page)


def register_default_pages() -> None:
    for page in (ExtraNetworksPageCheckpoints(), ExtraNetworksPageTextualInversion(), ExtraNetworksPageHypernetworks(),
                 ExtraNetworksPageLora()):
        if not any(type(p) is type(page) for p in extra_pages):
            register_page(page)


def find_preview(filename: str) -> str | None:
    """name.png / name.preview.png (or jpg, jpeg, webp, gif) beside the file, as A1111 looks for them."""
    base = os.path.splitext(filename)[0]
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (f"{base}.{ext}", f"{base}.preview.{ext}"):
            if os.path.isfile(candidate):
                return candidate
    return None


def save_preview(filename: str, image: Image.Image) -> str:
    """Save `image` as the card's thumbnail, name.preview.png beside the file, atomically; returns its path."""
    path = f"{os.path.splitext(filename)[0]}.preview.png"
    tmp = f"{path}.tmp"
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    for stale in (f"{os.path.splitext(filename)[0]}.{ext}" for ext in PREVIEW_EXTENSIONS):
        if os.path.isfile(stale):  # name.png would be found first and hide the new preview
            os.remove(stale)
    return path


_thumbnails: dict[tuple[str, float], str] = {}


def thumbnail_uri(path: str) -> str:
    """A small JPEG data URI of a preview, cached per file version: the page needs no file route for it."""
    key = (path, os.path.getmtime(path))
    if key not in _thumbnails:
        with Image.open(path) as image:
            image.thumbnail(THUMBNAIL_SIZE)
            _thumbnails[key] = ui_common.data_uri(image.copy(), "jpeg")
    return _thumbnails[key]


def sorted_items(page: ExtraNetworksPage, order: str, descending: bool) -> list[ExtraNetworksItem]:
    items = page.cards()
    if order in SORT_ORDERS[1:]:
        items.sort(key=lambda item: item.sort_key(order))
    return items[::-1] if descending else items


def card_html(item: ExtraNetworksItem) -> str:
    preview = item.preview
    style = f" style=\"background-image: url('{thumbnail_uri(preview)}')\"" if preview else ""
    search = " ".join(t for t in [item.name, *item.search_terms, os.path.basename(item.filename)] if t).lower()
    attrs = {"data-name": item.name, "data-prompt": item.prompt, "data-filename": item.filename, "data-search": search}
    data = " ".join(f'{key}="{html.escape(value, quote=True)}"' for key, value in attrs.items())
    return (f"<div class='card{'' if preview else ' no-preview'}' {data}{style}>"
            f"<button class='replace-preview' title='Replace preview with the image selected in the gallery'>"
            f"\U0001f5bc</button><div class='name'>{html.escape(item.name)}</div></div>")


def cards_html(page: ExtraNetworksPage, order: str = "Default", descending: bool = False) -> str:
    items = sorted_items(page, order, descending)
    if not items:
        folder = {"Lora": cmd_opts.lora_dir, "Textual Inversion": cmd_opts.embeddings_dir,
                  "Hypernetworks": cmd_opts.hypernetwork_dir}.get(page.title, "models/Stable-diffusion")
        return f"<div class='nocards'>Nothing here. Add some content to {html.escape(str(folder))}</div>"
    return "".join(card_html(item) for item in items)


CARDS_CSS = """
.card { display: inline-block; position: relative; width: 12em; height: 16em; margin: 0.4em; border-radius: 0.4em;
        background: var(--neutral-800) center / cover no-repeat; cursor: pointer; overflow: hidden; vertical-align: top; }
.card.no-preview { background-color: var(--neutral-600); }
.card .name { position: absolute; bottom: 0; width: 100%; padding: 0.4em; color: white; background: rgba(0,0,0,0.6);
              word-break: break-word; }
.card .replace-preview { position: absolute; top: 0.3em; right: 0.3em; display: none; }
.card:hover .replace-preview { display: block; }
.card.hidden-by-search { display: none; }
"""


def cards_js(tabname: str, separator: str) -> str:
    """Card clicks and search for one tab; `element` is the cards' HTML component, `trigger` sends its events."""
    return f"""
const tab = {json.dumps(tabname)}, separator = {json.dumps(separator)};
window.atelierPromptFocus = window.atelierPromptFocus || {{}};
if (!window.atelierPromptFocus[tab + ':listening']) {{
  window.atelierPromptFocus[tab + ':listening'] = true;
  document.addEventListener('focusin', (e) => {{
    const box = e.target.closest('#' + tab + '_prompt, #' + tab + '_neg_prompt');
    if (box && e.target.tagName === 'TEXTAREA') window.atelierPromptFocus[tab] = e.target;
  }});
}}
const promptBox = () => window.atelierPromptFocus[tab] && document.contains(window.atelierPromptFocus[tab])
  ? window.atelierPromptFocus[tab] : document.querySelector('#' + tab + '_prompt textarea');
const escape = (s) => s.replace(/[.*+?^${{}}()|[\\]\\\\]/g, '\\\\$&');
function toggle(textarea, text) {{
  const tag = text.match(/^<([^:>]+:[^:>]+)[:>]/);
  const pattern = tag ? new RegExp('\\\\s*<' + escape(tag[1]) + '(:[^>]*)?>')
                      : new RegExp('\\\\s*\\\\b' + escape(text) + '\\\\b');
  const value = textarea.value;
  textarea.value = pattern.test(value) ? value.replace(pattern, '')
                                       : value + (value.trim() ? separator : '') + text;
  textarea.dispatchEvent(new Event('input', {{bubbles: true}}));
}}
function applySearch() {{
  const box = document.querySelector('#' + tab + '_extra_search textarea, #' + tab + '_extra_search input');
  const terms = (box ? box.value : '').toLowerCase().trim();
  element.querySelectorAll('.card').forEach((card) => {{
    card.classList.toggle('hidden-by-search', terms !== '' && !card.dataset.search.includes(terms));
  }});
}}
document.addEventListener('input', (e) => {{ if (e.target.closest('#' + tab + '_extra_search')) applySearch(); }});
watch('value', applySearch);
element.addEventListener('click', (e) => {{
  const card = e.target.closest('.card');
  if (!card) return;
  if (e.target.closest('.replace-preview')) {{
    trigger('select', {{index: {REPLACE_PREVIEW}, value: card.dataset.filename}});
  }} else if (card.closest('[data-selects]')) {{
    trigger('select', {{index: {SELECT_CHECKPOINT}, value: card.dataset.prompt}});
  }} else {{
    const textarea = promptBox();
    if (textarea) toggle(textarea, card.dataset.prompt);
  }}
}});
"""


@dataclass
class ExtraNetworksUi:
    """The panel's components; `checkpoint_selected` receives the title of a clicked checkpoint card, for the page to
    switch the checkpoint setting with (see setup_ui for replace preview)."""

    tabname: str
    pages: list[ExtraNetworksPage]
    cards: list[gr.HTML]
    search: gr.Textbox
    sort_order: gr.Dropdown
    sort_descending: gr.Checkbox
    refresh: gr.Button
    checkpoint_selected: gr.Textbox


def render_all(pages: list[ExtraNetworksPage], order: str, descending: bool) -> list[str]:
    return [wrap_cards(page, cards_html(page, order, descending)) for page in pages]


def wrap_cards(page: ExtraNetworksPage, cards: str) -> str:
    return f"<div class='extra-network-cards'{'' if page.inserts else ' data-selects=1'}>{cards}</div>"


def create_ui(tabname: str) -> ExtraNetworksUi:
    """The panel's content, built inside the caller's container (A1111's ids: `{tabname}_extra_tabs`, ...)."""
    register_default_pages()
    pages = list(extra_pages)
    with gr.Row(elem_id=f"{tabname}_extra_networks_controls"):
        search = gr.Textbox(label="Search", show_label=False, placeholder="Search...", elem_id=f"{tabname}_extra_search",
                            scale=4)
        sort_order = gr.Dropdown(SORT_ORDERS, value="Default", label="Sort", show_label=False,
                                 elem_id=f"{tabname}_extra_sort", scale=1)
        sort_descending = gr.Checkbox(False, label="Reverse", elem_id=f"{tabname}_extra_sortorder", scale=1)
        refresh = gr.Button(refresh_symbol, elem_id=f"{tabname}_extra_refresh", scale=0, min_width=40)
    checkpoint_selected = gr.Textbox(visible=False, elem_id=f"{tabname}_extra_checkpoint_selected")
    cards = []
    with gr.Tabs(elem_id=f"{tabname}_extra_tabs"):
        for page in pages:
            with gr.Tab(page.title, elem_id=f"{tabname}_{page.id_page}"):
                cards.append(gr.HTML(wrap_cards(page, cards_html(page)), css_template=CARDS_CSS,
                                     js_on_load=cards_js(tabname, opts.extra_networks_add_text_separator),
                                     elem_id=f"{tabname}_{page.id_page}_cards_html", apply_default_css=False))

    def rerender(order: str, descending: bool) -> list[str]:
        return render_all(pages, order, descending)

    def rescan(order: str, descending: bool) -> list[str]:
        for page in pages:
            page.refresh()
        return render_all(pages, order, descending)

    sort_order.change(rerender, inputs=[sort_order, sort_descending], outputs=cards, show_progress="hidden")
    sort_descending.change(rerender, inputs=[sort_order, sort_descending], outputs=cards, show_progress="hidden")
    refresh.click(rescan, inputs=[sort_order, sort_descending], outputs=cards, show_progress="hidden")
    for html_cards in cards:
        html_cards.select(selected_checkpoint, outputs=[checkpoint_selected], show_progress="hidden")
    return ExtraNetworksUi(tabname, pages, cards, search, sort_order, sort_descending, refresh, checkpoint_selected)


def selected_checkpoint(evt: gr.SelectData):
    return evt.value if evt.index == SELECT_CHECKPOINT else gr.skip()


def replace_preview(filename: str, gallery: list | None, index: int | None) -> str:
    """Save the gallery's selected image (the first one when none is selected) as the thumbnail of `filename`."""
    if not gallery:
        raise gr.Error("Generate an image first: replace preview uses the image selected in the gallery")
    item = gallery[min(max(index or 0, 0), len(gallery) - 1)]
    with ui_common.gallery_image(item) as image:
        return save_preview(filename, image.convert("RGB"))


def setup_ui(ui: ExtraNetworksUi, gallery: gr.Gallery, selected_index: gr.State) -> None:
    """Bind replace preview to the tab's gallery and its selected index (A1111's setup_ui; ui_common.OutputPanel has
    both); call once the output panel exists."""

    def on_select(gallery_value, index, order, descending, evt: gr.SelectData):
        if evt.index != REPLACE_PREVIEW:
            return [gr.skip()] * len(ui.cards)
        replace_preview(evt.value, gallery_value, index)
        return render_all(ui.pages, order, descending)

    for html_cards in ui.cards:
        html_cards.select(on_select, inputs=[gallery, selected_index, ui.sort_order, ui.sort_descending],
                          outputs=ui.cards, show_progress="hidden")
