"""A1111's learning-rate schedule syntax: "0.005:100, 1e-3:1000, 1e-5".

Each "rate:step" pair holds `rate` until training reaches `step` (exclusive); a bare rate (or "rate:-1") holds until
the last step. Pairs that end before the run's first step are skipped (a resumed run starts mid-schedule). Training
stops when the schedule runs out. The same syntax sets the gradient clipping value.
"""
from __future__ import annotations

SYNTAX_HELP = ('It should be a number, or a list like "0.005:100, 1e-3:1000, 1e-5" for 0.005 until step 100, '
               '0.001 until step 1000 and 1e-5 after that.')


def parse_schedule(text: str, max_steps: int, cur_step: int = 0) -> list[tuple[float, int]]:
    """(rate, end step) segments of `text` for a run from `cur_step` to `max_steps`; ValueError when malformed."""
    segments: list[tuple[float, int]] = []
    for pair in str(text).split(","):
        if not pair.strip():
            continue
        parts = [part.strip() for part in pair.split(":")]
        if len(parts) > 2:
            raise ValueError(f"Invalid learning rate schedule {text!r}: {pair.strip()!r} has more than one ':'. {SYNTAX_HELP}")
        try:
            rate = float(parts[0])
            step = int(parts[1]) if len(parts) == 2 else -1
        except ValueError:
            raise ValueError(f"Invalid learning rate schedule {text!r}: cannot read {pair.strip()!r}. {SYNTAX_HELP}") from None
        if not rate > 0:
            raise ValueError(f"Invalid learning rate schedule {text!r}: the rate {parts[0]} must be above 0. {SYNTAX_HELP}")
        if step == -1 or step >= max_steps:
            segments.append((rate, max_steps))
            break
        if step < -1:
            raise ValueError(f"Invalid learning rate schedule {text!r}: step {step} is negative. {SYNTAX_HELP}")
        if step > cur_step and (not segments or step > segments[-1][1]):
            segments.append((rate, step))
    if not segments:
        raise ValueError(f"Invalid learning rate schedule {text!r}: no rate applies from step {cur_step} on. {SYNTAX_HELP}")
    return segments


class LearnRateScheduler:
    """Walks the schedule as training advances: `apply(optimizer, step)` before each step, stop once `finished`."""

    def __init__(self, learn_rate: str, max_steps: int, cur_step: int = 0):
        self.segments = parse_schedule(learn_rate, max_steps, cur_step)
        self._next = iter(self.segments)
        self.learn_rate, self.end_step = next(self._next)
        self.finished = False

    def step(self, step_number: int) -> bool:
        """Move to the segment of `step_number`; True when the rate changed."""
        changed = False
        while step_number >= self.end_step and not self.finished:
            try:
                self.learn_rate, self.end_step = next(self._next)
                changed = True
            except StopIteration:
                self.finished = True
        return changed

    def apply(self, optimizer, step_number: int) -> None:
        self.step(step_number)
        for group in optimizer.param_groups:
            group["lr"] = self.learn_rate

    def rate_at(self, step_number: int) -> float | None:
        """The rate of `step_number`, None past the end of the schedule."""
        return next((rate for rate, end in self.segments if step_number < end), None)
