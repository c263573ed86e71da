"""A1111's prompt language (modules.prompt_parser names): emphasis, BREAK, comments, prompt editing, alternation, AND.

Schedules count steps from 1, as A1111's documentation does: a schedule entry [end_at_step, text] serves steps 1..end_at_step,
i.e. the denoiser's 0-based evaluations 0..end_at_step-1, so `[cat:dog:5]` shows cat to evaluations 0..4 and dog from 5 on
and `[a|b]` gives a, b, a, ... (A1111's code reads the 0-based counter with <=, one evaluation late: its issue #7279).
"""
from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

_token = re.compile(
    r"""
    \\[\\()\[\]]             # escaped bracket or backslash
    | \(                      # open emphasis
    | \[                      # open de-emphasis
    | :\s*([+-]?[.\d]+)\s*\)  # explicit weight closing a round bracket
    | \)
    | \]
    | [^\\()\[\]:]+           # plain text
    | :                       # a lone colon is text
    | \\                      # a lone backslash is text
    """,
    re.X,
)
_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str) -> list[list]:
    """Split a prompt into [text, weight] pairs; ["BREAK", -1] marks a forced chunk boundary.

    >>> parse_prompt_attention("a (b:1.5) [c] \\\\(d\\\\)")
    [['a ', 1.0], ['b', 1.5], [' ', 1.0], ['c', 0.9090909090909091], [' (d)', 1.0]]
    """
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for part in res[start:]:
            part[1] *= multiplier

    for m in _token.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\") and len(tok) == 2:
            res.append([tok[1], 1.0])
        elif tok == "(":
            round_open.append(len(res))
        elif tok == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply_from(round_open.pop(), float(weight))
        elif tok == ")" and round_open:
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif tok == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_break.split(tok)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for start in round_open:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply_from(start, SQUARE_MULTIPLIER)
    return _merge_equal_weights(res) or [["", 1.0]]


def _merge_equal_weights(res: list[list]) -> list[list]:
    merged: list[list] = []
    for text, weight in res:
        if merged and weight == merged[-1][1] and weight != -1 and text != "BREAK":
            merged[-1][0] += text
        elif text or weight == -1:
            merged.append([text, weight])
    return merged


def strip_comments(text: str) -> str:
    """Remove `#` comments (opts.enable_prompt_comments): whole comment lines go, an inline comment ends its line."""
    lines = []
    for line in text.split("\n"):
        if line.lstrip().startswith("#"):
            continue
        lines.append(line.split("#", 1)[0])
    return "\n".join(lines)


# --- prompt editing and alternation -------------------------------------------------------------------------------
# Grammar (A1111's): start: (prompt | stray "[](): ")* ; prompt: (emphasized | scheduled | alternate | plain)*
# emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"     (kept as text, contents scheduled)
# scheduled: "[" [prompt ":"] prompt ":" WS? NUMBER WS? "]"      alternate: "[" prompt ("|" prompt?)+ "]"

_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")


@dataclass(eq=False)
class _Scheduled:
    before: list
    after: list
    when: str
    step: int = 0  # `when` resolved against the step count


@dataclass(eq=False)
class _Alternate:
    options: list[list] = field(default_factory=list)


class _Unparseable(Exception):
    """The prompt has no valid reading (a stray `|`, a trailing backslash): it is used literally."""


class _ScheduleParser:
    def __init__(self, text: str):
        self.text = text

    def parse(self) -> list:
        text, nodes, i = self.text, [], 0
        while i < len(text):
            part, i = self.prompt(i)
            nodes.extend(part)
            if i < len(text):
                if text[i] not in "[]():":
                    raise _Unparseable
                nodes.append(text[i])  # a bracket or colon that closes nothing is text
                i += 1
        return nodes

    def prompt(self, i: int) -> tuple[list, int]:
        """Longest run of emphasized/scheduled/alternate/plain parts from i; stops where none of them starts."""
        nodes = []
        while i < len(self.text):
            if self.text[i] in "([":
                found = self.round(i) if self.text[i] == "(" else self.square(i)
                if found is None:
                    break
                part, i = found
                nodes.extend(part)
                continue
            m = _PLAIN.match(self.text, i)
            if m is None:
                break
            nodes.append(m.group())
            i = m.end()
        return nodes, i

    def round(self, i: int) -> tuple[list, int] | None:
        inner, j = self.prompt(i + 1)
        if self.at(j, ")"):
            return ["(", *inner, ")"], j + 1
        if self.at(j, ":"):
            second, k = self.prompt(j + 1)
            if self.at(k, ")"):
                return ["(", *inner, ":", *second, ")"], k + 1
        return None

    def square(self, i: int) -> tuple[list, int] | None:
        first, j = self.prompt(i + 1)
        if self.at(j, "]"):
            return ["[", *first, "]"], j + 1
        if self.at(j, "|"):
            options = [first]
            while self.at(j, "|"):
                option, j = self.prompt(j + 1)
                options.append(option)
            return ([_Alternate(options)], j + 1) if self.at(j, "]") else None
        if not self.at(j, ":"):
            return None
        number = _NUMBER.match(self.text, j + 1)
        if number:  # [to:when]
            return [_Scheduled([], first, number.group(1))], number.end()
        second, k = self.prompt(j + 1)
        number = _NUMBER.match(self.text, k + 1) if self.at(k, ":") else None
        if number:  # [from:to:when]
            return [_Scheduled(first, second, number.group(1))], number.end()
        return None

    def at(self, i: int, char: str) -> bool:
        return i < len(self.text) and self.text[i] == char


def _walk(nodes: list):
    for node in nodes:
        if isinstance(node, _Scheduled):
            yield node
            yield from _walk(node.before)
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _render(nodes: list, step: int, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            _render(node.before if step <= node.step else node.after, step, out)
        else:
            _render(node.options[(step - 1) % len(node.options)], step, out)


def get_learned_conditioning_prompt_schedules(prompts: list[str], base_steps: int, hires_steps: int | None = None,
                                              use_old_scheduling: bool = False) -> list[list[list]]:
    """Each prompt -> [[end_at_step, text], ...], the text to use up to and including end_at_step.

    New timeline: `when` with a "." is a fraction of the steps, else a step number; in a hires pass (hires_steps
    given) integers count on from base_steps and fractions 1..2 address the hires pass. Old timeline: `when` < 1 is a
    fraction, else a step number.

    >>> get_learned_conditioning_prompt_schedules(["a [b:c:0.5] d"], 10)
    [[[5, 'a b d'], [10, 'a c d']]]
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, float_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, float_offset, steps = base_steps, 1.0, hires_steps

    def schedule(prompt: str) -> list[list]:
        try:
            nodes = _ScheduleParser(prompt).parse()
        except _Unparseable:
            return [[steps, prompt]]
        ends = {steps}
        for node in _walk(nodes):
            if isinstance(node, _Alternate):
                ends.update(range(1, steps + 1))
                continue
            value = float(node.when)
            if use_old_scheduling:
                value = value * steps if value < 1 else value
            elif "." in node.when:
                value = (value - float_offset) * steps
            else:
                value -= int_offset
            node.step = min(steps, int(value))
            if node.step >= 1:
                ends.add(node.step)
        result = []
        for end in sorted(ends):
            out: list[str] = []
            _render(nodes, end, out)
            result.append([end, "".join(out)])
        return result

    cache = {prompt: schedule(prompt) for prompt in dict.fromkeys(prompts)}
    return [cache[prompt] for prompt in prompts]


# --- conditioning schedules ---------------------------------------------------------------------------------------

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
Encode = Callable[[list[str]], list]  # texts -> one conditioning per text (prompt_encoding.Conditioning, batch 1)


def get_learned_conditioning(encode: Encode, prompts: list[str], steps: int, hires_steps: int | None = None,
                             use_old_scheduling: bool = False) -> list[list[ScheduledPromptConditioning]]:
    """Each prompt -> its schedule of conditionings; the variants of one prompt are encoded together, once per prompt."""
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache: dict[str, list[ScheduledPromptConditioning]] = {}
    for prompt, schedule in zip(prompts, schedules):
        if prompt not in cache:
            conds = encode([text for _, text in schedule])
            cache[prompt] = [ScheduledPromptConditioning(end, cond) for (end, _), cond in zip(schedule, conds)]
    return [cache[prompt] for prompt in prompts]


_AND = re.compile(r"\bAND\b")
_WEIGHT = re.compile(r"^(\s*.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def get_multicond_prompt_list(prompts: list[str]) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """Split prompts at AND into weighted sub-prompts (`text :weight`, default 1).

    Returns (per prompt: [(index into the flat list, weight)], the flat list of distinct sub-prompts, text -> index).
    """
    res_indexes: list[list[tuple[int, float]]] = []
    flat: list[str] = []
    indexes: dict[str, int] = {}
    for prompt in prompts:
        parts = []
        for subprompt in _AND.split(prompt):
            m = _WEIGHT.search(subprompt)
            text, weight = (m.group(1), m.group(2)) if m else (subprompt, None)
            if text not in indexes:
                indexes[text] = len(flat)
                flat.append(text)
            parts.append((indexes[text], float(weight) if weight is not None else 1.0))
        res_indexes.append(parts)
    return res_indexes, flat, indexes


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules: list[ScheduledPromptConditioning], weight: float = 1.0):
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape: tuple, batch: list[list[ComposableScheduledPromptConditioning]]):
        self.shape = shape
        self.batch = batch


def get_multicond_learned_conditioning(encode: Encode, prompts: list[str], steps: int, hires_steps: int | None = None,
                                       use_old_scheduling: bool = False) -> MulticondLearnedConditioning:
    """Like get_learned_conditioning, for prompts that may be AND-composed (composable diffusion)."""
    res_indexes, flat, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(encode, flat, steps, hires_steps, use_old_scheduling)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in parts] for parts in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _at_step(schedule: list[ScheduledPromptConditioning], current_step: int):
    for entry in schedule:
        if current_step < entry.end_at_step:  # current_step is 0-based, end_at_step counts from 1
            return entry.cond
    return schedule[0].cond  # past the last entry: A1111 falls back to the first


def reconstruct_cond_batch(c: list[list[ScheduledPromptConditioning]], current_step: int):
    """The batch's conditioning at a step: one row per prompt, shorter ones padded with their last token vector."""
    conds = [_at_step(schedule, current_step) for schedule in c]
    return type(conds[0]).stack(conds)


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, current_step: int):
    """(per image: [(row, weight)], the stacked conditioning rows of every sub-prompt) at a step."""
    conds_list, conds = [], []
    for composable_prompts in c.batch:
        rows = []
        for composable in composable_prompts:
            rows.append((len(conds), composable.weight))
            conds.append(_at_step(composable.schedules, current_step))
        conds_list.append(rows)
    return conds_list, type(conds[0]).stack(conds)
