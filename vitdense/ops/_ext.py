"""Loads the compiled ops ``vitdense._C`` once and decides, per op and
device, which backend runs.

CPU tensors run on ``vitdense._C``'s CPU kernels (the PyTorch reference when
the extension is missing), meta tensors on their fake kernels. Importing
``vitdense._C`` registers the ops ``torch.ops.vitdense.*`` with the
dispatcher. vitdense's CUDA kernels have not yet passed their
tests on a GPU, so CUDA tensors run on them only when the environment says
``VITDENSE_CUDA_OPS=1``; otherwise multi-scale deformable attention runs on
mmcv's CUDA kernel (the one mmdet's models use) and ops that mmcv lacks (the
relation bias) on the PyTorch reference.
"""
import functools
import os
import warnings
from typing import Optional, Tuple

import torch

try:
    from vitdense import _C as ext
    load_error: Optional[str] = None
except ImportError as error:  # built with VITDENSE_NO_EXT=1, or not built
    ext = None
    load_error = f'{type(error).__name__}: {error}'

#: Environment switch that sends CUDA tensors to vitdense's CUDA kernels.
CUDA_OPT_IN = 'VITDENSE_CUDA_OPS'
#: Ops that mmcv also implements on CUDA.
MMCV_CUDA_OPS = ('multi_scale_deformable_attn', )

_warned = set()


def cuda_opted_in() -> bool:
    """Whether ``VITDENSE_CUDA_OPS=1`` is set (read at every call)."""
    return os.environ.get(CUDA_OPT_IN, '0') == '1'


@torch.compiler.assume_constant_result
def cuda_compiled() -> bool:
    """Whether ``vitdense._C`` has CUDA kernels (a constant to
    ``torch.compile``, which cannot trace into the extension)."""
    return ext is not None and ext.with_cuda()


@torch.compiler.assume_constant_result
def mmcv_has_cuda_ops() -> bool:
    """Whether mmcv's compiled ops were built with CUDA (a constant to
    ``torch.compile``)."""
    return _mmcv_has_cuda_ops()


@functools.lru_cache(maxsize=None)
def _mmcv_has_cuda_ops() -> bool:
    try:
        from mmcv.ops import get_compiling_cuda_version
        return get_compiling_cuda_version() != 'not available'
    except (ImportError, AttributeError):
        return False


#: why :func:`backend` picks the reference while an ONNX export traces
ONNX_EXPORT = 'an ONNX export traces the PyTorch reference'


def backend(op: str, device: torch.device) -> Tuple[str, str]:
    """The backend that runs ``op`` on ``device`` tensors, and why.

    Returns ``(name, reason)`` with name ``'kernel'`` (``vitdense._C``),
    ``'mmcv'`` (mmcv's CUDA kernel) or ``'reference'`` (PyTorch). An ONNX
    export traces the reference: compiled kernels have no ONNX symbolic.
    """
    if torch.onnx.is_in_onnx_export():
        return 'reference', ONNX_EXPORT
    if device.type == 'cuda':
        if cuda_compiled() and cuda_opted_in():
            return 'kernel', f"vitdense._C's CUDA kernels ({CUDA_OPT_IN}=1)"
        if not cuda_opted_in():
            reason = (f"vitdense's CUDA kernels are not verified on a GPU "
                      f'yet; {CUDA_OPT_IN}=1 uses them')
        elif ext is None:
            reason = (f'{CUDA_OPT_IN}=1 but vitdense._C is not importable '
                      f'({load_error})')
        else:
            reason = f'{CUDA_OPT_IN}=1 but vitdense._C has no CUDA kernels'
        if op in MMCV_CUDA_OPS and mmcv_has_cuda_ops():
            return 'mmcv', reason
        return 'reference', reason
    if ext is None:
        return 'reference', f'vitdense._C is not importable ({load_error})'
    if device.type == 'cpu':
        return 'kernel', "vitdense._C's CPU kernels"
    if device.type == 'meta':
        return 'kernel', "vitdense's fake kernels (shapes only)"
    return 'reference', f'vitdense._C has no {device.type} kernels'


def warn_fallback(op: str, device: torch.device, reason: str) -> None:
    """Warn once per (op, device type) that the reference path is used."""
    key = (op, device.type)
    if key in _warned or reason == ONNX_EXPORT:
        return
    _warned.add(key)
    hint = ('' if device.type == 'cuda' else
            ' Rebuild with `pip install --no-build-isolation -e .`.')
    warnings.warn(
        f'vitdense.ops.{op} on {device.type}: {reason}; the slow PyTorch '
        f'reference runs.{hint}',
        stacklevel=3)
