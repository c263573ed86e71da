"""styles.csv: reading, applying with and without {prompt}, extracting back, saving with .bak atomically."""
from __future__ import annotations

import os

import pytest

from modules import styles
from modules.styles import StyleDatabase, extract_style_text_from_prompt, merge_prompts

CSV = (
    "name,prompt,negative_prompt\n"
    'photo,"a photo of {prompt}, 35mm","blurry, {prompt}"\n'
    "painted,oil painting,ugly\n"
    "# other.csv,,\n"
    "negonly,,lowres\n"
)


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8-sig")
    return StyleDatabase([str(path)])


def test_reads_utf8_with_bom_and_skips_divider_rows(db):
    assert list(db.styles) == ["photo", "painted", "negonly"]
    assert db.styles["photo"].prompt == "a photo of {prompt}, 35mm"
    assert db.styles["photo"].negative_prompt == "blurry, {prompt}"


def test_merge_with_and_without_placeholder():
    assert merge_prompts("a photo of {prompt}, 35mm", "a cat") == "a photo of a cat, 35mm"
    assert merge_prompts("oil painting", "a cat ") == "a cat, oil painting"
    assert merge_prompts("oil painting", "") == "oil painting"


def test_apply_in_order_to_prompt_and_negative(db):
    assert db.apply_styles_to_prompt("a cat", ["photo", "painted"]) == "a photo of a cat, 35mm, oil painting"
    assert db.apply_styles_to_prompt("a cat", ["painted", "photo"]) == "a photo of a cat, oil painting, 35mm"
    assert db.apply_negative_styles_to_prompt("dark", ["photo", "painted"]) == "blurry, dark, ugly"
    assert db.apply_styles_to_prompt("a cat", ["unknown"]) == "a cat"


def test_extract_reverses_apply(db):
    prompt = db.apply_styles_to_prompt("a cat", ["photo", "painted"])
    negative = db.apply_negative_styles_to_prompt("dark", ["photo", "painted"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["photo", "painted"], "a cat", "dark")
    # both texts must match: a prompt carrying only the positive half keeps its text
    assert db.extract_styles_from_prompt("a cat, oil painting", "dark") == ([], "a cat, oil painting", "dark")
    assert db.extract_styles_from_prompt("a cat", "lowres") == (["negonly"], "a cat", "")


def test_extract_style_text():
    assert extract_style_text_from_prompt("a photo of {prompt}, 35mm", " a photo of a dog, 35mm ") == (True, "a dog")
    assert extract_style_text_from_prompt("oil painting", "a dog, oil painting") == (True, "a dog")
    assert extract_style_text_from_prompt("oil painting", "a dog") == (False, "a dog")


def test_save_writes_bak_and_new_style_round_trips(db, tmp_path):
    path = tmp_path / "styles.csv"
    db.save_style("new, one", 'with "quotes", and commas', "")
    assert (tmp_path / "styles.csv.bak").read_text(encoding="utf-8-sig") == CSV
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    reread = StyleDatabase([str(path)])
    assert reread.styles["new, one"].prompt == 'with "quotes", and commas'
    assert list(reread.styles) == ["photo", "painted", "negonly", "new, one"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    reread.delete_style("painted")
    assert "painted" not in StyleDatabase([str(path)]).styles


def test_several_files_keep_their_styles(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("name,prompt,negative_prompt\none,1,\n", encoding="utf-8-sig")
    second.write_text("name,prompt,negative_prompt\ntwo,2,\n", encoding="utf-8-sig")
    db = StyleDatabase([str(tmp_path / "*.csv")])
    assert db.get_style_paths() == [str(first), str(second)]
    db.save_style("two", "22", "")
    db.save_style("three", "3", "")  # new styles go to the first file
    assert "two,22," in second.read_text(encoding="utf-8-sig")
    assert "three,3," in first.read_text(encoding="utf-8-sig")


def test_missing_file_is_an_empty_database_created_on_save(tmp_path):
    path = tmp_path / "sub" / "styles.csv"
    db = StyleDatabase([str(path)])
    assert db.styles == {}
    db.save_style("s", "x {prompt}", "")
    # csv's own line ends
    assert path.read_bytes().decode("utf-8-sig") == "name,prompt,negative_prompt\r\ns,x {prompt},\r\n"


def test_default_database_follows_the_styles_file_flag(tmp_path, monkeypatch):
    from modules.shared_cmd_options import cmd_opts

    path = tmp_path / "mine.csv"
    path.write_text("name,prompt,negative_prompt\nmine,m,\n", encoding="utf-8-sig")
    monkeypatch.setattr(cmd_opts, "styles_file", [str(path)])
    assert list(styles.prompt_styles().styles) == ["mine"]
