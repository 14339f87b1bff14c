"""Helpers shared by the benchmark tools in ``tools/analysis_tools/``.

Process memory comes from ``/proc/self/status`` (Linux): ``VmRSS`` is the
resident set now, ``VmHWM`` its high-water mark; :func:`reset_peak_rss`
returns freed heap pages to the system and resets the mark (``/proc/self/clear_refs``), so ``VmHWM - VmRSS`` after a measured
region is what that region added.
"""
import argparse
import ctypes
import ctypes.util
from typing import Optional

import torch

__all__ = ['status_kb', 'reset_peak_rss', 'add_device_args', 'setup_device']


def status_kb(field: str) -> Optional[int]:
    """``field`` of ``/proc/self/status`` in KiB, or None where unreadable."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim``, or
    tcmalloc's ``ReleaseFreeMemory`` when it is preloaded) and reset
    ``VmHWM``; False where the kernel refuses."""
    process = ctypes.CDLL(None)
    release = getattr(process, 'MallocExtension_ReleaseFreeMemory', None)
    if release is not None:
        release()
    libc_name = ctypes.util.find_library('c')
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):
            pass
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, as every benchmark tool takes them."""
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')


def setup_device(args: argparse.Namespace) -> None:
    """Apply ``--threads``; refuse ``--device cuda`` without a GPU."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda given but CUDA is not available')
