"""Loads the compiled ops ``vitdense._C`` once and reports which are live."""
import warnings
from typing import Optional

import torch

try:
    from vitdense import _C as ext
    load_error: Optional[str] = None
except ImportError as error:  # built with VITDENSE_NO_EXT=1, or not built
    ext = None
    load_error = f'{type(error).__name__}: {error}'

_warned = set()


def has_kernel(device: torch.device) -> bool:
    """Whether ``vitdense._C`` has a kernel for tensors on ``device``."""
    if ext is None:
        return False
    if device.type == 'cpu':
        return True
    return device.type == 'cuda' and ext.with_cuda()


def warn_fallback(op: str, device: torch.device) -> None:
    """Warn once per (op, device type) that the reference path is used."""
    key = (op, device.type)
    if key in _warned:
        return
    _warned.add(key)
    reason = (f'vitdense._C is not importable ({load_error})'
              if ext is None else
              f'vitdense._C was built without {device.type} kernels')
    warnings.warn(
        f'vitdense.ops.{op}: {reason}; using the slow PyTorch reference. '
        'Rebuild with `pip install --no-build-isolation -e .`.',
        stacklevel=3)
