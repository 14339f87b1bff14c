"""vitdense's compiled ops, their PyTorch references and modules."""
from typing import Any, Dict

import torch

from . import _ext
from .multi_scale_deform_attn import (MultiScaleDeformableAttention,
                                      convert_mmcv_msda,
                                      multi_scale_deformable_attn,
                                      multi_scale_deformable_attn_pytorch)
from .relation_attention import (PositionRelationEmbedding,
                                 box_relation_bias, box_relation_bias_pytorch)

__all__ = [
    'MultiScaleDeformableAttention', 'PositionRelationEmbedding',
    'box_relation_bias', 'box_relation_bias_pytorch', 'convert_mmcv_msda',
    'info', 'multi_scale_deformable_attn',
    'multi_scale_deformable_attn_pytorch'
]

_OPS = ('multi_scale_deformable_attn', 'box_relation_bias')


def info() -> Dict[str, Any]:
    """Which backend runs each op, per device, and why.

    Returns a dict: ``extension`` (``vitdense._C`` imported), ``error`` (why
    it failed to load, else None), ``cuda_compiled`` (it has CUDA kernels),
    ``gpu`` (torch sees a GPU), ``cpu`` (``'kernel'`` or ``'reference'``),
    ``cuda`` (op name -> ``'kernel'``, ``'mmcv'`` or ``'reference'``: what
    CUDA tensors would run on, GPU or not) and ``why`` (device -> reason).
    vitdense's CUDA kernels run only with ``VITDENSE_CUDA_OPS=1`` (see
    :mod:`vitdense.ops._ext`).
    """
    cpu, cpu_why = _ext.backend(_OPS[0], torch.device('cpu'))
    cuda = {op: _ext.backend(op, torch.device('cuda')) for op in _OPS}
    return {
        'extension': _ext.ext is not None,
        'error': _ext.load_error,
        'cuda_compiled': _ext.cuda_compiled(),
        'gpu': torch.cuda.is_available(),
        'cpu': cpu,
        'cuda': {op: name for op, (name, _) in cuda.items()},
        'why': {'cpu': cpu_why, 'cuda': cuda[_OPS[0]][1]},
    }
