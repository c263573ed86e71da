"""Always-on scripts' `section` and `sorting_priority`: controls land inside the section of the tab that A1111 names
(sampler, dimensions, accordions, ...), sections the tab has no place for and scripts without one go to the scripts
area before the Script dropdown, each group ordered by sorting_priority then load order; p.script_args slices follow."""
from __future__ import annotations

import gradio as gr
import pytest

from modules import scripts, ui_img2img, ui_loadsave, ui_txt2img


def always_on(title: str, section: str | None = None, priority: int = 0) -> type:
    def ui(self, is_img2img):
        return [gr.Checkbox(False, label=title, elem_id=self.elem_id("on"))]

    return type(title.replace(" ", ""), (scripts.Script,), {
        "section": section, "sorting_priority": priority, "title": lambda self: title,
        "show": lambda self, is_img2img: scripts.AlwaysVisible, "ui": ui})


class Chosen(scripts.Script):
    def title(self):
        return "Chosen"

    def ui(self, is_img2img):
        return [gr.Textbox(label="Chosen text", elem_id=self.elem_id("text"))]


SCRIPTS = [always_on("Late", priority=5), always_on("Plain"), always_on("Accordion late", "accordions", 2),
           always_on("Accordion", "accordions"), always_on("Sampler extra", "sampler"),
           always_on("Custom", "my_section"), Chosen, always_on("Early", priority=-1)]


@pytest.fixture
def with_scripts(monkeypatch):
    """SCRIPTS loaded, and fresh runners for the tabs (the page's own are left as they were)."""
    monkeypatch.setattr(scripts, "scripts_data", [scripts.ScriptClassData(cls, f"/x/{cls.__name__}.py", "/x", None)
                                                  for cls in SCRIPTS])
    monkeypatch.setattr(scripts, "scripts_txt2img", scripts.ScriptRunner())
    monkeypatch.setattr(scripts, "scripts_img2img", scripts.ScriptRunner())


def build_tab(module, tmp_path):
    loadsave = ui_loadsave.UiLoadsave(str(tmp_path / "ui-config.json"))
    with gr.Blocks() as demo:
        module.create_ui(loadsave, lambda key: None)
    return demo


def parents(demo) -> dict[int, int]:
    """Each block's id -> its parent's id in the page layout."""
    found = {}

    def walk(node, parent):
        if parent is not None:
            found[node["id"]] = parent
        for child in node.get("children", []):
            walk(child, node["id"])

    walk(demo.config["layout"], None)
    return found


def ancestors(demo, block: int) -> list[int]:
    up = parents(demo)
    found = []
    while block in up:
        block = up[block]
        found.append(block)
    return found


def by_elem_id(demo) -> dict[str, int]:
    return {c["props"]["elem_id"]: c["id"] for c in demo.config["components"] if c.get("props", {}).get("elem_id")}


def siblings_after(demo, elem_id: str) -> list[int]:
    """The ids of the blocks after `elem_id` in the same parent."""
    up = parents(demo)
    block = by_elem_id(demo)[elem_id]
    children = [i for i, p in up.items() if p == up[block]]
    return children[children.index(block) + 1:]


@pytest.mark.parametrize(("module", "tab"), [(ui_txt2img, "txt2img"), (ui_img2img, "img2img")])
def test_section_scripts_are_placed_in_their_section_and_the_rest_in_the_scripts_area(with_scripts, tmp_path, module,
                                                                                        tab):
    demo = build_tab(module, tmp_path)
    runner = scripts.scripts_txt2img if tab == "txt2img" else scripts.scripts_img2img
    titles = {s.title(): s for s in runner.alwayson_scripts}
    assert runner.placed_sections >= {"sampler", "dimensions", "accordions", "override_settings"}
    # after the Hires. fix accordion (txt2img) or the Refiner one (img2img), in the settings column: A1111's accordions
    anchor = f"{tab}_hr" if tab == "txt2img" else f"{tab}_enable_refiner"
    after_anchor = siblings_after(demo, anchor)
    accordion_groups = [titles["Accordion"].group._id, titles["Accordion late"].group._id]
    assert after_anchor[:2] == accordion_groups
    sampler_row_then = siblings_after(demo, f"sampler_selection_{tab}")
    assert sampler_row_then[0] == titles["Sampler extra"].group._id
    # the scripts area: the unknown section first, then no section by sorting_priority, then the dropdown
    container = by_elem_id(demo)[f"{tab}_script_container"]
    area = [i for i, p in parents(demo).items() if p == container]
    expected = [titles[t].group._id for t in ("Custom", "Early", "Plain", "Late")]
    assert area[:4] == expected
    assert parents(demo)[by_elem_id(demo)["script_list"]] == area[4]  # the dropdown, in the form block Gradio wraps it in
    for script in runner.alwayson_scripts:  # every control is inside its script's group
        [control] = script.controls
        assert script.group._id in ancestors(demo, control._id)
        assert runner.inputs[script.args_from:script.args_to] == script.controls
    assert [s.title() for s in sorted(runner.alwayson_scripts, key=lambda s: s.args_from)] == [
        "Sampler extra", "Accordion", "Accordion late", "Custom", "Early", "Plain", "Late"]
    chosen = runner.selectable_scripts[0]
    assert runner.inputs[chosen.args_from:chosen.args_to] == chosen.controls
    assert chosen.args_from > max(s.args_from for s in runner.alwayson_scripts)


def test_without_a_tab_every_always_on_script_goes_to_the_scripts_area_by_sorting_priority(with_scripts):
    runner = scripts.ScriptRunner()
    runner.initialize_scripts(is_img2img=False)
    runner.prepare_ui()
    with gr.Blocks():
        runner.setup_ui()
    order = [s.title() for s in sorted(runner.alwayson_scripts, key=lambda s: s.args_from)]
    assert order == ["Accordion", "Accordion late", "Sampler extra", "Custom", "Early", "Plain", "Late"]


def test_a_section_call_places_only_that_sections_scripts(with_scripts):
    runner = scripts.ScriptRunner()
    runner.initialize_scripts(is_img2img=False)
    runner.prepare_ui()
    with gr.Blocks(), gr.Column() as column:
        runner.setup_ui_for_section("accordions")
    assert [s.title() for s in runner.alwayson_scripts if s.args_from is not None] == ["Accordion late", "Accordion"]
    assert column.children == [runner.title_map["accordion"].group, runner.title_map["accordion late"].group]
    assert [s.title() for s in runner.unplaced_alwayson_scripts()] == ["Sampler extra", "Custom", "Early", "Plain", "Late"]
