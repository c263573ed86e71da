"""A1111's prompt syntax: emphasis weights and BREAK (modules.prompt_parser names)."""
from __future__ import annotations

import re

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
