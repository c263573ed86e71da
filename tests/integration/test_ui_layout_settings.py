"""The "UI alternatives" settings that change how txt2img and img2img are laid out, seen in the built page (no
browser): samplers as a radio group, batch sliders apart from the size, the prompts inside the controls column."""
from __future__ import annotations

import pytest

from modules import ui
from modules.shared_options import opts


def build_page(**settings):
    """The page built with some settings changed: {elem_id: component config}, {elem_id: its ancestors' elem_ids}."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in settings.items():
            monkeypatch.setitem(opts.data, key, value)
        config = ui.create_ui().get_config_file()
    by_id = {c["id"]: c for c in config["components"]}
    components, ancestors = {}, {}

    def walk(node, path):
        elem_id = by_id.get(node["id"], {}).get("props", {}).get("elem_id")
        if elem_id:
            components.setdefault(elem_id, by_id[node["id"]])
            ancestors.setdefault(elem_id, path)
        for child in node.get("children", []):
            walk(child, [*path, elem_id] if elem_id else path)

    walk(config["layout"], [])
    return components, ancestors


@pytest.fixture(scope="module")
def default_page():
    return build_page(samplers_in_dropdown=True, dimensions_and_batch_together=True, compact_prompt_box=False)


TABS = ("txt2img", "img2img")


def test_samplers_in_dropdown_off_shows_a_radio_group(default_page):
    components, ancestors = build_page(samplers_in_dropdown=False)
    for tab in TABS:
        assert default_page[0][f"{tab}_sampling"]["type"] == "dropdown"
        radio = components[f"{tab}_sampling"]
        assert radio["type"] == "radio" and radio["props"]["label"] == "Sampling method"
        assert ("Euler a", "Euler a") in radio["props"]["choices"] and radio["props"]["value"] == "DPM++ 2M"
        assert f"sampler_selection_{tab}" in ancestors[f"{tab}_sampling"]


def test_dimensions_and_batch_together_off_puts_batch_in_its_own_row(default_page):
    _, ancestors = build_page(dimensions_and_batch_together=False)
    for tab in TABS:
        assert f"{tab}_dimensions_row" in default_page[1][f"{tab}_batch_count"]
        assert f"{tab}_column_batch" in default_page[1][f"{tab}_batch_size"]
        assert f"{tab}_dimensions_row" not in ancestors[f"{tab}_batch_count"]
        assert f"{tab}_column_batch" in ancestors[f"{tab}_batch_count"]
        assert f"{tab}_settings" in ancestors[f"{tab}_batch_size"]


def test_compact_prompt_box_puts_the_prompts_in_the_controls_column(default_page):
    _, ancestors = build_page(compact_prompt_box=True)
    for tab in TABS:
        assert f"{tab}_toprow" in default_page[1][f"{tab}_prompt"]
        assert f"{tab}_toprow" in default_page[1][f"{tab}_styles"]
        for elem_id in (f"{tab}_prompt", f"{tab}_neg_prompt", f"{tab}_styles", f"{tab}_clear_prompt"):
            assert f"{tab}_toprow" not in ancestors[elem_id] and f"{tab}_generation_tab" in ancestors[elem_id], elem_id
        assert f"{tab}_toprow" in ancestors[f"{tab}_generate"]
