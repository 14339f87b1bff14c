"""Reuse freed memory of large CPU tensors instead of page-faulting anew.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with
a fresh ``mmap`` and unmaps it on free, so the kernel page-faults and zeroes
each large tensor again every time one is created: a CPU DETR training step
faults in several GB this way (a decoder's ``(batch * heads, queries,
queries)`` attention logits are 77 MB at 1100 queries). On GPU PyTorch's
caching allocator avoids this; :func:`enable_cpu_caching_allocator` installs
vitdense's CPU counterpart (``vitdense/ops/csrc/cpu/caching_allocator.cpp``):
freed blocks of 1 MiB or more wait in per-size free lists, at most
``max_cached_bytes`` of them, for the next tensor of their size class.
``tools/train.py`` and ``tools/test.py`` enable it; set
``VITDENSE_CPU_CACHING_ALLOCATOR=0`` to opt out.
"""
import os
from typing import Dict, Optional

from vitdense.ops import _ext

__all__ = [
    'enable_cpu_caching_allocator', 'cpu_caching_allocator_stats',
    'empty_cpu_cache'
]

_DEFAULT_MAX_CACHED = 8 * 2**30


def _default_max_cached() -> int:
    """A quarter of physical memory, at most 8 GiB."""
    try:
        total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
        return _DEFAULT_MAX_CACHED
    return min(total // 4, _DEFAULT_MAX_CACHED)


def enable_cpu_caching_allocator(
        max_cached_bytes: Optional[int] = None) -> bool:
    """Make torch's CPU tensors of 1 MiB or more reuse freed blocks.

    Calling it again only changes the cache limit.

    Args:
        max_cached_bytes (int, optional): most bytes held in free lists;
            beyond it freed blocks go back to the OS. Default: a quarter of
            physical memory, at most 8 GiB.

    Returns:
        bool: whether it is torch's CPU allocator now: False when opted out
        (``VITDENSE_CPU_CACHING_ALLOCATOR=0``), when ``vitdense._C`` is not
        built, or when another allocator of higher priority is installed.
    """
    if os.environ.get('VITDENSE_CPU_CACHING_ALLOCATOR', '1') == '0':
        return False
    if _ext.ext is None:
        return False
    if max_cached_bytes is None:
        max_cached_bytes = _default_max_cached()
    if max_cached_bytes < 0:
        raise ValueError(
            f'max_cached_bytes must be >= 0, got {max_cached_bytes}')
    return bool(_ext.ext.enable_cpu_caching_allocator(int(max_cached_bytes)))


def cpu_caching_allocator_stats() -> Dict[str, int]:
    """``cached_bytes``, ``max_cached_bytes``, ``hits`` and ``misses`` (large
    allocations served from the cache or not); empty if never enabled."""
    if _ext.ext is None:
        return {}
    values = _ext.ext.cpu_caching_allocator_stats()
    return dict(zip(('cached_bytes', 'max_cached_bytes', 'hits', 'misses'),
                    values))


def empty_cpu_cache() -> None:
    """Return the cached blocks to the OS (live tensors are untouched)."""
    if _ext.ext is not None:
        _ext.ext.cpu_caching_allocator_empty_cache()
