"""A1111's modules.memmon: the device memory numbers extensions print (`shared.mem_mon`)."""
from __future__ import annotations

import psutil
import torch


class MemUsageMonitor:
    """Free/total memory of the device jobs run on: CUDA's own numbers, the host's RAM on a CPU-only machine."""

    def __init__(self, name: str = "MemMon", device: torch.device | None = None):
        self.name = name
        self.device = device

    def cuda_mem_get_info(self) -> tuple[int, int]:
        """(free bytes, total bytes)."""
        if torch.cuda.is_available():
            index = self.device.index if self.device is not None and self.device.index is not None else \
                torch.cuda.current_device()
            return torch.cuda.mem_get_info(index)
        memory = psutil.virtual_memory()
        return memory.available, memory.total

    def read(self) -> dict:
        """A1111's keys that describe the device now: free and total, and on CUDA the allocator's active/reserved."""
        free, total = self.cuda_mem_get_info()
        data = {"free": free, "total": total}
        if torch.cuda.is_available():
            stats = torch.cuda.memory_stats()
            data.update(active=stats["active_bytes.all.current"], active_peak=stats["active_bytes.all.peak"],
                        reserved=stats["reserved_bytes.all.current"], reserved_peak=stats["reserved_bytes.all.peak"])
        return data


mem_mon = MemUsageMonitor()
