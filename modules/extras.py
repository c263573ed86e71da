"""A1111's modules.extras: the Checkpoint Merger's helpers extensions call (the merge itself is extras_merge)."""
from __future__ import annotations

from modules import extras_merge


def create_config(ckpt_result: str, config_source: int, a, b, c) -> None:
    """Copy the .yaml config beside a merge's input next to its output `ckpt_result`: config_source 0 takes A's
    (else B's, else C's), 1 B's, 2 C's, anything else none. a, b, c are CheckpointInfo or None."""
    extras_merge.copy_config(ckpt_result, config_source, [a, b, c])
