"""Pure training logic: the learning-rate schedule syntax, captions and prompt templates."""
from __future__ import annotations

import random

import pytest
import torch

from modules import training_dataset
from modules.learn_schedule import LearnRateScheduler, parse_schedule


def test_schedule_gives_each_rate_until_its_step():
    scheduler = LearnRateScheduler("0.005:100, 1e-3:1000, 1e-5", max_steps=2000)
    assert scheduler.segments == [(0.005, 100), (1e-3, 1000), (1e-5, 2000)]
    assert [scheduler.rate_at(s) for s in (0, 99, 100, 999, 1000, 1999, 2000)] == \
        [0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5, None]


def test_scheduler_walks_the_segments_and_finishes():
    scheduler = LearnRateScheduler("0.1:2, 0.01:4", max_steps=10)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    seen = []
    for step in range(6):
        scheduler.apply(optimizer, step)
        seen.append((optimizer.param_groups[0]["lr"], scheduler.finished))
    assert seen == [(0.1, False), (0.1, False), (0.01, False), (0.01, False), (0.01, True), (0.01, True)]


def test_single_rate_and_minus_one_hold_until_max_steps():
    assert parse_schedule("0.005", 500) == [(0.005, 500)]
    assert parse_schedule("0.1:10, 0.02:-1, 0.5:900", 500) == [(0.1, 10), (0.02, 500)]
    assert parse_schedule("0.1:10, 0.2:800", 500) == [(0.1, 10), (0.2, 500)]


def test_resumed_run_skips_finished_segments():
    scheduler = LearnRateScheduler("0.1:10, 0.01:20, 0.001", max_steps=30, cur_step=15)
    assert scheduler.segments == [(0.01, 20), (0.001, 30)]
    assert scheduler.learn_rate == 0.01


@pytest.mark.parametrize("text,detail", [
    ("", "no rate applies"), ("abc", "cannot read 'abc'"), ("0.1:ten", "cannot read '0.1:ten'"),
    ("0.1:5:6", "more than one ':'"), ("0", "must be above 0"), ("-0.1", "must be above 0"),
    ("0.1:-5", "step -5 is negative"),
])
def test_malformed_schedule_names_the_problem(text, detail):
    with pytest.raises(ValueError) as error:
        parse_schedule(text, 100)
    assert "Invalid learning rate schedule" in str(error.value) and detail in str(error.value)
    assert "0.005:100, 1e-3:1000, 1e-5" in str(error.value)


def test_schedule_ended_before_the_resumed_step_is_an_error():
    with pytest.raises(ValueError, match="no rate applies from step 50"):
        parse_schedule("0.1:10, 0.01:40", 100, cur_step=50)


def test_caption_from_text_file_or_file_name(tmp_path):
    (tmp_path / "12-a cat.png").write_bytes(b"")
    (tmp_path / "3 dog.png").write_bytes(b"")
    (tmp_path / "3 dog.txt").write_text("  a dog, running \n", encoding="utf8")
    assert training_dataset.caption_of(str(tmp_path / "12-a cat.png")) == "a cat"
    assert training_dataset.caption_of(str(tmp_path / "3 dog.png")) == "a dog, running"


def test_template_placeholders_shuffle_and_dropout():
    rng = random.Random(0)
    line = "a photo of [name], [filewords]"
    assert training_dataset.make_text(line, "tok", "a,b,c", False, 0.0, rng) == "a photo of tok, a,b,c"
    shuffled = {training_dataset.make_text(line, "tok", "a,b,c", True, 0.0, rng) for _ in range(30)}
    assert len(shuffled) > 1 and all(sorted(s.split(", ", 1)[1].split(",")) == ["a", "b", "c"] for s in shuffled)
    dropped = [training_dataset.make_text("[filewords]", "tok", "a,b,c,d", False, 0.5, rng) for _ in range(40)]
    assert any(len(d.split(",")) < 4 for d in dropped) and all(set(d.split(",")) <= {"a", "b", "c", "d", ""} for d in dropped)


def test_standard_templates_exist_and_use_the_placeholders():
    templates = training_dataset.list_templates()
    for name in ("style.txt", "subject.txt", "style_filewords.txt", "subject_filewords.txt", "none.txt",
                 "hypernetwork.txt"):
        assert name in templates
    for name in ("style.txt", "subject.txt"):
        assert all("[name]" in line for line in training_dataset.read_template(templates[name]))
    for name in ("style_filewords.txt", "subject_filewords.txt"):
        assert all("[filewords]" in line for line in training_dataset.read_template(templates[name]))
    with pytest.raises(ValueError, match="'nope.txt' not found.*style.txt"):
        training_dataset.template_path("nope.txt")


def test_templates_dir_flag_points_at_the_users_folder(tmp_path, monkeypatch):
    from modules.shared_cmd_options import cmd_opts

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "portrait.txt").write_text("a portrait of [name]\n", encoding="utf8")
    monkeypatch.setattr(cmd_opts, "textual_inversion_templates_dir", str(tmp_path))
    assert list(training_dataset.list_templates()) == ["mine/portrait.txt"]
    assert training_dataset.template_path("mine/portrait.txt") == str(tmp_path / "mine" / "portrait.txt")
