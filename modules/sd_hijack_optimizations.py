"""A1111's modules.sd_hijack_optimizations: helpers of its cross-attention replacements that extensions call.

A1111 swapped LDM's attention forward functions (xformers, sub-quadratic, Doggettx...) in place. Atelier runs diffusers'
attention on PyTorch's scaled-dot-product attention and patches nothing, so the forward replacements do not exist
(an import of one names what is missing); the helpers below give their results.
"""
from __future__ import annotations

import psutil
import torch
import torch.nn.functional as F

_LDM_ONLY = ("SdOptimization", "SdOptimizationXformers", "SdOptimizationSdp", "SdOptimizationSdpNoMem",
             "SdOptimizationSubQuad", "SdOptimizationV1", "SdOptimizationInvokeAI", "SdOptimizationDoggettx",
             "list_optimizers", "split_cross_attention_forward", "split_cross_attention_forward_v1",
             "split_cross_attention_forward_invokeAI", "sub_quad_attention_forward", "xformers_attention_forward",
             "scaled_dot_product_attention_forward", "cross_attention_attnblock_forward", "xformers_attnblock_forward",
             "sdp_attnblock_forward", "sub_quad_attnblock_forward")


def get_available_vram() -> int:
    """Bytes a computation can still take: CUDA's free memory plus what the allocator holds unused; RAM on the CPU."""
    if torch.cuda.is_available():
        stats = torch.cuda.memory_stats()
        free, _ = torch.cuda.mem_get_info()
        return free + stats["reserved_bytes.all.current"] - stats["active_bytes.all.current"]
    return psutil.virtual_memory().available


def get_xformers_flash_attention_op(q, k, v):
    """None: no xformers flash-attention operator is chosen (Atelier uses PyTorch's attention)."""


def sub_quad_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_chunk_size: int = 1024,
                       kv_chunk_size: int | None = None, kv_chunk_size_min: int | None = None,
                       chunk_threshold: int | None = None, use_checkpoint: bool = True) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over [batch, tokens, channels]: the result of A1111's memory-saving chunked
    attention, computed by PyTorch's scaled-dot-product attention (itself memory-efficient); chunk sizes are moot."""
    return F.scaled_dot_product_attention(q, k, v)


def __getattr__(name):
    if name in _LDM_ONLY:
        raise ImportError(f"modules.sd_hijack_optimizations.{name} replaces LDM's attention forward in place; Atelier "
                          "runs diffusers' attention on PyTorch's scaled-dot-product attention and has no such function")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
