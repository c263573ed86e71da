"""A1111's shared.total_tqdm: a second console progress bar over a whole job (every image's sampling steps)."""
from __future__ import annotations

import sys

import tqdm

from modules import job_context
from modules.shared_cmd_options import cmd_opts
from modules.shared_state import state


class TotalTQDM:
    """Shown only with the multiple_tqdm setting on and without --disable-console-progressbars."""

    def __init__(self, file=None):
        self.file = file  # None: the console (sys.stdout at the time the bar starts)
        self._tqdm = None

    @staticmethod
    def enabled() -> bool:
        return bool(job_context.settings().multiple_tqdm) and not cmd_opts.disable_console_progressbars

    def reset(self) -> None:
        """Start a new bar sized job_count x sampling_steps of the running job (no total while those are unknown)."""
        if not self.enabled():
            return
        total = state.job_count * state.sampling_steps if state.job_count > 0 and state.sampling_steps > 0 else None
        self._tqdm = tqdm.tqdm(desc="Total progress", total=total, position=1, file=self.file or sys.stdout)

    def update(self) -> None:
        """One step done."""
        if not self.enabled():
            return
        if self._tqdm is None:
            self.reset()
        self._tqdm.update()

    def updateTotal(self, new_total: int) -> None:
        """The bar's total becomes new_total steps (A1111's name)."""
        if not self.enabled():
            return
        if self._tqdm is None:
            self.reset()
        self._tqdm.total = new_total

    def clear(self) -> None:
        """End the bar, leaving its last line on the console."""
        if self._tqdm is not None:
            self._tqdm.refresh()
            self._tqdm.close()
            self._tqdm = None


total_tqdm = TotalTQDM()
