"""The Extensions tab's Available list: installed detection, A1111's tag filter (hide/show, or/and), the eight sort
orders with missing fields last, the hidden count (modules.extensions_index) and the table the UI renders from them."""
from __future__ import annotations

import json
import re

import gradio as gr
import pytest

from modules import (
    config_states,
    extensions,
    extensions_index,
    paths_internal,
    ui_extensions,
)
from modules.extensions_index import Installed

INDEX = {
    "tags": {"script": "a script", "ads": "has ads", "tab": "adds a tab", "installed": "already installed"},
    "extensions": [
        {"name": "Beta", "url": "https://github.com/o/beta.git", "description": "does beta things", "tags": ["script"],
         "added": "2023-03-01", "created_at": "2022-12-01T10:00:00Z", "commit_time": "2024-05-01T00:00:00Z", "stars": 50},
        {"name": "alpha", "url": "https://github.com/o/alpha", "description": "first letter", "tags": ["script", "ads"],
         "added": "2024-01-10", "created_at": "2023-11-01T00:00:00Z", "commit_time": "2024-02-01T00:00:00Z", "stars": 300},
        {"name": "Gamma Tab", "url": "https://github.com/o/gamma-tab", "description": "adds a tab", "tags": ["tab"],
         "added": "2023-08-15", "created_at": "2023-07-01T00:00:00Z", "commit_time": "2024-06-01T12:00:00+00:00",
         "stars": 7},
        {"name": "Delta", "url": "https://example.com/o/delta.git", "description": "delta things",
         "tags": ["ads", "tab", "installed"]},
        {"name": "epsilon", "url": "https://github.com/o/epsilon", "description": "small", "tags": [],
         "added": "2022-12-24", "updated": "2023-01-05T00:00:00Z", "created_at": "not a date", "stars": "12"},
        {"name": "no url", "tags": ["script"]},
        {"url": "https://github.com/o/nameless", "tags": "script", "stars": True, "added": ""},
        {"name": "Infinite", "url": "https://github.com/o/infinite", "stars": float("inf")},
        "not an entry",
    ],
}
# Gamma Tab by its folder name, Delta by its clone's remote (the index URL has ".git", the remote does not)
INSTALLED = Installed(frozenset({"gamma-tab", "Lora"}), frozenset({"https://example.com/o/delta"}))
ALL = ["Beta", "alpha", "Gamma Tab", "Delta", "epsilon", "noname", "Infinite"]


def names(entries) -> list[str]:
    return [entry.title for entry in entries]


def view(tags=(), order=4, search="", showing="hide", filtering="or"):
    shown, hidden = extensions_index.available_view(INDEX, INSTALLED, tags, order, search, showing, filtering)
    return names(shown), hidden


def test_entries_read_the_index_and_mark_installed_ones():
    found = extensions_index.entries(INDEX, INSTALLED)
    assert names(found) == ALL  # without a URL or not a dict: left out
    by_name = {entry.title: entry for entry in found}
    assert [entry.title for entry in found if entry.installed] == ["Gamma Tab", "Delta"]
    assert by_name["Gamma Tab"].tags == ("tab", "installed")
    assert by_name["Delta"].tags == ("ads", "tab", "installed")  # the virtual tag is not doubled
    assert by_name["Beta"].tags == ("script",) and by_name["noname"].tags == ()  # tags not a list: none
    assert by_name["epsilon"].stars == 12  # "12" counts; True and Infinity do not
    assert by_name["noname"].stars is None and by_name["Infinite"].stars is None
    assert by_name["noname"].name is None and by_name["noname"].added is None
    assert by_name["epsilon"].updated.isoformat() == "2023-01-05T00:00:00+00:00"  # "updated" when no commit_time
    assert by_name["epsilon"].created is None and by_name["Delta"].updated is None


def test_installed_by_folder_name_or_remote_url(tmp_path):
    clone = extensions.Extension("my-clone", str(tmp_path / "my-clone"))
    clone.remote, clone.have_info_from_repo = "https://github.com/o/renamed.git/", True
    folder = extensions.Extension("plain", str(tmp_path / "plain"))  # no git repository: no remote
    installed = Installed.of([clone, folder])
    assert installed == Installed(frozenset({"my-clone", "plain"}), frozenset({"https://github.com/o/renamed"}))
    assert "https://github.com/o/renamed" in installed and "https://github.com/other/renamed.git" not in installed
    assert "https://github.com/o/plain.git" in installed and "git@github.com:o/plain.git" in installed
    assert "https://github.com/o/plainer" not in installed


@pytest.mark.parametrize(("order", "expected"), [
    ("newest first", ["alpha", "Gamma Tab", "Beta", "epsilon", "Delta", "noname", "Infinite"]),
    ("oldest first", ["epsilon", "Beta", "Gamma Tab", "alpha", "Delta", "noname", "Infinite"]),
    ("a-z", ["alpha", "Beta", "Delta", "epsilon", "Gamma Tab", "Infinite", "noname"]),
    ("z-a", ["Infinite", "Gamma Tab", "epsilon", "Delta", "Beta", "alpha", "noname"]),
    ("internal order", ALL),
    ("update time", ["Gamma Tab", "Beta", "alpha", "epsilon", "Delta", "noname", "Infinite"]),
    ("create time", ["alpha", "Gamma Tab", "Beta", "Delta", "epsilon", "noname", "Infinite"]),
    ("stars", ["alpha", "Beta", "epsilon", "Gamma Tab", "Delta", "noname", "Infinite"]),
])
def test_each_sort_order_puts_missing_fields_last(order, expected):
    found = extensions_index.entries(INDEX, INSTALLED)
    assert names(extensions_index.sort_entries(found, order)) == expected
    assert names(extensions_index.sort_entries(found, extensions_index.SORT_ORDERS.index(order))) == expected  # the radio's index


@pytest.mark.parametrize("order", [None, -1, 8, "bogus"])
def test_an_unknown_order_is_newest_first(order):
    found = extensions_index.entries(INDEX, INSTALLED)
    assert names(extensions_index.sort_entries(found, order)) == \
        ["alpha", "Gamma Tab", "Beta", "epsilon", "Delta", "noname", "Infinite"]


def test_equal_keys_keep_index_order():
    index = {"extensions": [{"name": n, "url": f"https://x/{n}", "added": "2024-01-01"} for n in ("c", "a", "b")]}
    found = extensions_index.entries(index, Installed(frozenset(), frozenset()))
    assert names(extensions_index.sort_entries(found, "newest first")) == ["c", "a", "b"]
    assert names(extensions_index.sort_entries(found, "oldest first")) == ["c", "a", "b"]


def test_default_tags_hide_ads_localization_and_installed():
    assert extensions_index.DEFAULT_TAGS == ["ads", "localization", "installed"]
    assert view(extensions_index.DEFAULT_TAGS) == (["Beta", "epsilon", "noname", "Infinite"], 3)


@pytest.mark.parametrize(("showing", "filtering", "expected"), [
    ("hide", "or", (["Beta", "epsilon", "noname", "Infinite"], 3)),  # hides any with ads or tab
    ("hide", "and", (["Beta", "alpha", "Gamma Tab", "epsilon", "noname", "Infinite"], 1)),  # hides those with both
    ("show", "or", (["alpha", "Gamma Tab", "Delta"], 4)),  # shows only those with ads or tab
    ("show", "and", (["Delta"], 6)),  # shows only those with both
])
def test_tag_filter_modes(showing, filtering, expected):
    assert view(["ads", "tab"], showing=showing, filtering=filtering) == expected


@pytest.mark.parametrize(("showing", "filtering"), [("hide", "or"), ("show", "or"), ("show", "and")])
def test_no_tag_selected_filters_nothing(showing, filtering):
    assert view([], showing=showing, filtering=filtering) == (ALL, 0)


def test_search_and_tags_both_count_as_hidden():
    assert view([], search=" TAB ") == (["Gamma Tab"], 6)  # in a name
    assert view([], search="THINGS") == (["Beta", "Delta"], 5)  # in a description
    assert view(extensions_index.DEFAULT_TAGS, search="things") == (["Beta"], 6)
    assert view(["script"], order="a-z", showing="show", search="") == (["alpha", "Beta"], 5)


def test_a_bare_index_gives_nothing_and_no_error():
    assert extensions_index.available_view({}, INSTALLED, ["ads"], 0) == ([], 0)
    only_url = {"extensions": [{"url": "https://x/only"}]}
    for order in extensions_index.SORT_ORDERS:
        shown, hidden = extensions_index.available_view(only_url, INSTALLED, [], order)
        assert (names(shown), hidden) == (["noname"], 0)


def test_tag_choices_and_descriptions():
    assert extensions_index.tag_choices(INDEX) == ["script", "ads", "localization", "installed", "tab"]
    assert extensions_index.tag_choices({"extensions": [{"tags": ["zz"]}, {"tags": "no"}]}) == \
        ["script", "ads", "localization", "installed", "zz"]
    assert extensions_index.tag_descriptions(INDEX)["tab"] == "adds a tab"
    assert extensions_index.tag_descriptions({"tags": ["not", "a", "dict"]}) == {}


@pytest.fixture
def installed_extensions(tmp_path, monkeypatch):
    """Gamma Tab installed as a folder, Delta as a clone of its URL without ".git"."""
    folder = extensions.Extension("gamma-tab", str(tmp_path / "gamma-tab"))
    clone = extensions.Extension("delta-clone", str(tmp_path / "delta-clone"))
    clone.remote = "https://example.com/o/delta"
    for ext in (folder, clone):
        ext.have_info_from_repo = True
    monkeypatch.setattr(extensions, "extensions", [folder, clone])


TABLE_NAMES = r"target='_blank'>([^<]+)</a>"


@pytest.mark.parametrize(("tags", "order", "search", "showing", "filtering"), [
    (["ads", "localization", "installed"], 0, "", "hide", "or"),
    (["ads", "tab"], 7, "", "show", "or"),
    (["ads", "tab"], 3, "", "hide", "and"),
    ([], 5, "thing", "show", "and"),
])
def test_the_table_shows_the_same_rows_and_count(installed_extensions, tags, order, search, showing, filtering):
    table = ui_extensions.available_table(INDEX, tags, order, search, showing, filtering)
    expected, hidden = view(tags, order, search, showing, filtering)
    assert re.findall(TABLE_NAMES, table) == expected
    assert table.count("<tr><td>") == len(expected)
    assert (f"<p>Extension hidden: {hidden}</p>" in table) == (hidden > 0)


def test_table_cells(installed_extensions):
    table = ui_extensions.available_table(INDEX, [], 4)
    rows = dict(zip(re.findall(TABLE_NAMES, table), re.findall(r"<tr><td>.*?</tr>", table), strict=True))
    gamma, delta, beta = rows["Gamma Tab"], rows["Delta"], rows["Beta"]
    assert "<a href='https://github.com/o/gamma-tab' target='_blank'>Gamma Tab</a>" in gamma
    assert ("<span class='extension-tag' title='adds a tab'>tab</span>, "
            "<span class='extension-tag' title='already installed'>installed</span>") in gamma
    assert "<span class='date_added'>Update: 2024-06-01  Added: 2023-08-15  Created: 2023-07-01</span>" in gamma
    assert "<span class='star_count'>stars: <b>7</b></span>" in gamma
    assert "<button disabled>Installed</button>" in gamma and "<button disabled>Installed</button>" in delta
    assert "<span class='date_added'>Update:   Added: unknown  Created: </span></p>" in delta  # no stars: none shown
    assert "star_count" not in delta
    assert "extensionsInstallFromIndex(this, &quot;https://github.com/o/beta.git&quot;)'>Install</button>" in beta
    assert "<td>does beta things<p class='info'>" in beta
    assert "Extension hidden" not in table


def test_load_and_install_keep_the_view(installed_extensions, tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    path.write_text(json.dumps(INDEX))
    index, table, tags_update, message = ui_extensions.load_available(str(path), ["tab"], 2, "", "show", "or")
    assert index == INDEX and message == ""
    assert re.findall(TABLE_NAMES, table) == ["Delta", "Gamma Tab"]
    assert tags_update["choices"] == ["script", "ads", "localization", "installed", "tab"]

    monkeypatch.setattr(extensions, "install_extension_from_url", lambda dirname, url: f"/ext/{url.rsplit('/', 1)[1]}")
    monkeypatch.setattr(ui_extensions, "extension_table", lambda: "installed table")
    available, installed, message = ui_extensions.install_from_index("https://github.com/o/alpha", INDEX, ["ads"], 2, "",
                                                                     "show", "and")
    assert re.findall(TABLE_NAMES, available) == ["alpha", "Delta"] and installed == "installed table"
    assert message == "Installed into /ext/alpha. Use the Installed tab to restart."


def test_controls_recompute_from_the_loaded_index(tmp_path, monkeypatch):
    monkeypatch.setattr(extensions, "extensions", [])
    monkeypatch.setattr(paths_internal, "config_states_dir", str(tmp_path / "config_states"))
    monkeypatch.setattr(config_states, "get_config", dict)
    with gr.Blocks() as demo:
        ui_extensions.create_ui()
    blocks = {block.elem_id: block for block in demo.blocks.values() if block.elem_id}
    tags, order = blocks["extensions_tags"], blocks["extensions_order"]
    assert (tags.label, [choice[0] for choice in tags.choices], tags.value) == \
        ("Extension tags", ["script", "ads", "localization", "installed"], ["ads", "localization", "installed"])
    assert [choice[0] for choice in order.choices] == extensions_index.SORT_ORDERS and order.type == "index"
    assert (blocks["extensions_showing_type"].label, blocks["extensions_showing_type"].value) == ("Showing type", "hide")
    assert (blocks["extensions_filtering_type"].label, blocks["extensions_filtering_type"].value) == ("Filtering type", "or")

    view_ids = ["extensions_tags", "extensions_order", "extensions_search", "extensions_showing_type",
                "extensions_filtering_type"]
    recompute = [fn for fn in demo.fns.values() if fn.fn is ui_extensions.available_table]
    assert sorted(demo.blocks[target].elem_id for fn in recompute for target, _ in fn.targets) == sorted(view_ids)
    for fn in recompute:  # the loaded index (a State), never the URL box
        assert [block.elem_id for block in fn.inputs] == [None, *view_ids]
        assert isinstance(fn.inputs[0], gr.State)
