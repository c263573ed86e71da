"""A1111's modules.timer: named stages of a long task (model load, merge) and their durations, for one log line."""
from __future__ import annotations

import time


class Timer:
    def __init__(self, print_log: bool = False):
        self.start = time.time()
        self.records: dict[str, float] = {}
        self.total = 0.0
        self.print_log = print_log

    def elapsed(self) -> float:
        """Seconds since the start or the last record, and restart the clock."""
        end = time.time()
        res = end - self.start
        self.start = end
        return res

    def add_time_to_record(self, category: str, amount: float) -> None:
        self.records[category] = self.records.get(category, 0.0) + amount

    def record(self, category: str, extra_time: float = 0.0, disable_log: bool = False) -> None:
        """Add the time since the last record (plus extra_time) to `category`."""
        amount = self.elapsed() + extra_time
        self.add_time_to_record(category, amount)
        self.total += amount
        if self.print_log and not disable_log:
            print(f"{category}: done in {amount:.3f}s")

    def summary(self) -> str:
        """`1.2s (load weights: 0.9s, apply: 0.3s)`: stages of at least 0.1s, as A1111 prints it."""
        parts = [f"{category}: {time_taken:.1f}s" for category, time_taken in self.records.items() if time_taken >= 0.1]
        return f"{self.total:.1f}s" + (f" ({', '.join(parts)})" if parts else "")

    def dump(self) -> dict:
        return {"total": self.total, "records": self.records}

    def reset(self) -> None:
        self.__init__(self.print_log)
