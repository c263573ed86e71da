"""A1111's prompt language without a model: schedules, alternation, AND, comments, extra-network tags, and the
per-step reconstruction of conditioning (on stand-in conditionings)."""
from __future__ import annotations

import pytest

from modules import extra_networks
from modules.prompt_parser import (
    get_learned_conditioning,
    get_learned_conditioning_prompt_schedules,
    get_multicond_learned_conditioning,
    get_multicond_prompt_list,
    parse_prompt_attention,
    reconstruct_cond_batch,
    reconstruct_multicond_batch,
    strip_comments,
)


def schedule(prompt: str, steps: int = 10, **kwargs):
    return get_learned_conditioning_prompt_schedules([prompt], steps, **kwargs)[0]


@pytest.mark.parametrize("prompt,expected", [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[cat:dog:0.5]", [[5, "cat"], [10, "dog"]]),
    ("[cat::4]", [[4, "cat"], [10, ""]]),
    ("[a:b:0]", [[10, "b"]]),
    ("[a:b:25]", [[10, "a"]]),
    ("(x:1.2) [y:z:2] \\[w:3\\]", [[2, "(x:1.2) y \\[w:3\\]"], [10, "(x:1.2) z \\[w:3\\]"]]),
])
def test_prompt_editing_schedules(prompt, expected):
    assert schedule(prompt) == expected


def test_alternation_and_empty_options():
    assert schedule("[a|(b:1.1)]", 4) == [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"]]
    assert schedule("[fe|]male", 3) == [[1, "female"], [2, "male"], [3, "female"]]
    assert schedule("[a|b|c] x", 4) == [[1, "a x"], [2, "b x"], [3, "c x"], [4, "a x"]]


def test_unparseable_prompt_is_used_literally():
    assert schedule("a | b [c:3]") == [[10, "a | b [c:3]"]]  # a `|` outside brackets has no reading
    assert schedule("trailing \\") == [[10, "trailing \\"]]


def test_integer_is_a_step_and_a_dot_a_fraction():
    assert schedule("[a:b:1]") == [[1, "a"], [10, "b"]]
    assert schedule("[a:b:1.0]") == [[10, "a"]]  # 1.0 = the whole run: the switch never happens
    assert schedule("[a:b:0.25]", 20) == [[5, "a"], [20, "b"]]


def test_old_timeline_fraction_below_one_else_step():
    assert schedule("[a:b:1.0]", use_old_scheduling=True) == [[1, "a"], [10, "b"]]
    assert schedule("[a:b:0.3]", use_old_scheduling=True) == [[3, "a"], [10, "b"]]


def test_hires_timeline():
    # 20 base steps, 10 hires steps: integers count on from the base steps, fractions 1..2 address the hires pass
    assert schedule("[a:b:25]", 20, hires_steps=10) == [[5, "a"], [10, "b"]]
    assert schedule("[a:b:1.5]", 20, hires_steps=10) == [[5, "a"], [10, "b"]]
    assert schedule("[a:b:0.5]", 20, hires_steps=10) == [[10, "b"]]  # switched during the first pass
    # the old timeline ignores the hires pass: fractions and steps count on the base steps
    assert schedule("[a:b:0.5]", 20, hires_steps=10, use_old_scheduling=True) == [[10, "a"], [20, "b"]]


def test_and_splits_weighted_sub_prompts():
    indexes, flat, by_text = get_multicond_prompt_list(["a cat :1.2 AND a dog :0.8", "a cat:1.2", "(x:1.1)"])
    assert flat == ["a cat", " a dog", "(x:1.1)"]
    assert indexes == [[(0, 1.2), (1, 0.8)], [(0, 1.2)], [(2, 1.0)]]
    assert by_text == {"a cat": 0, " a dog": 1, "(x:1.1)": 2}
    assert get_multicond_prompt_list(["ANDROID AND x"])[1] == ["ANDROID", " x"]


def test_comments_are_stripped():
    assert strip_comments("a cat # fluffy\nsits\n# whole line\non a mat") == "a cat \nsits\non a mat"
    assert strip_comments("no comment") == "no comment"


def test_attention_with_break_and_nesting():
    assert parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ["a ", 1.0], ["house", pytest.approx(1.573)], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", pytest.approx(0.55)],
        [", sun, ", 1.1], ["sky", pytest.approx(1.4641)], [".", 1.1]]
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]


def test_extra_network_tags_are_removed_and_collected():
    text, found = extra_networks.parse_prompt("a cat <lora:my_lora:0.5> on <hypernet:hn> a mat <lora:b:te=0.3:unet=1>")
    assert text == "a cat  on  a mat "
    assert [p.items for p in found["lora"]] == [["my_lora", "0.5"], ["b", "te=0.3", "unet=1"]]
    assert found["lora"][1].positional == ["b"] and found["lora"][1].named == {"te": "0.3", "unet": "1"}
    assert [p.items for p in found["hypernet"]] == [["hn"]]
    prompts, data = extra_networks.parse_prompts(["x <lora:first:1>", "y <lora:second:1>"])
    assert prompts == ["x ", "y "]
    assert [p.items for p in data["lora"]] == [["first", "1"]]  # the first prompt's tags apply to the batch


class Cond:
    """A stand-in conditioning: a name per row; stack() concatenates rows like prompt_encoding.Conditioning."""

    def __init__(self, rows):
        self.rows = list(rows)

    @staticmethod
    def stack(conds):
        return Cond(row for c in conds for row in c.rows)


def fake_encode(encoded: list):
    def encode(texts):
        encoded.append(list(texts))
        return [Cond([t]) for t in texts]
    return encode


def test_reconstruct_picks_each_prompts_entry_for_the_step():
    encoded = []
    conds = get_learned_conditioning(fake_encode(encoded), ["[cat:dog:2]", "plain", "[cat:dog:2]"], 4)
    assert encoded == [["cat", "dog"], ["plain"]]  # the variants of one prompt together, each prompt once
    rows = [reconstruct_cond_batch(conds, step).rows for step in range(4)]
    assert rows == [["cat", "plain", "cat"]] * 2 + [["dog", "plain", "dog"]] * 2


def test_reconstruct_multicond_lists_rows_and_weights():
    multi = get_multicond_learned_conditioning(fake_encode([]), ["a :2 AND [b:c:1]", "a"], 3)
    conds_list, cond = reconstruct_multicond_batch(multi, 0)
    assert conds_list == [[(0, 2.0), (1, 1.0)], [(2, 1.0)]]
    assert cond.rows == ["a", " b", "a"]
    assert reconstruct_multicond_batch(multi, 2)[1].rows == ["a", " c", "a"]
