"""vitdense's compiled ops, their PyTorch references and modules."""
from typing import Dict, Optional, Union

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


def info() -> Dict[str, Union[bool, str, Optional[str]]]:
    """Which backends are live.

    Returns a dict: ``extension`` (``vitdense._C`` imported), ``cpu`` and
    ``cuda`` (``'kernel'``, ``'reference'`` or, for CUDA without a visible
    GPU, ``'no device'``), and ``error`` (why ``vitdense._C`` failed to load,
    else None).
    """
    cuda_built = _ext.ext is not None and _ext.ext.with_cuda()
    if not torch.cuda.is_available():
        cuda = 'no device'
    else:
        cuda = 'kernel' if cuda_built else 'reference'
    return {
        'extension': _ext.ext is not None,
        'cpu': 'kernel' if _ext.ext is not None else 'reference',
        'cuda': cuda,
        'cuda_compiled': cuda_built,
        'error': _ext.load_error,
    }
