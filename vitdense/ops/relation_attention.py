"""Position relation embedding of Relation-DETR, fused.

`Relation DETR: Exploring Explicit Position Relation Prior for Object
Detection <https://arxiv.org/abs/2407.11699>`_; official code
xiuqhou/Relation-DETR (``models/bricks/relation_transformer.py``). For
source boxes i and target boxes j (normalised cxcywh) the official module
computes, under ``torch.no_grad``, ``[log(|dx|/(w_i+eps)+1),
log(|dy|/(h_i+eps)+1), log((w_i+eps)/(w_j+eps)), log((h_i+eps)/(h_j+eps))]``
with eps = 1e-5, a sine embedding of each (``num_pos_feats`` dims,
``temperature``, ``scale``, sin/cos interleaved), then a 1x1 conv to
``num_heads`` channels and ReLU. Difference: vitdense's kernel never builds
the (B, N, M, 4 * num_pos_feats) embedding; it recomputes it in tiles, and
its backward gives gradients for the conv weight and bias only (the boxes get
none, as in the official code). On CPU the two size features, differences of
per-box logs, are expanded with the angle-difference identities into an
inner product of per-box vectors inside the same tile loop, so only the two
centre-distance features need per-pair sines (and these run with AVX2/FMA
when the CPU has them). The kernels are the dispatcher ops
``torch.ops.vitdense.relation_forward/backward``; their fake kernels and
autograd formula are registered here with :mod:`torch.library`.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _ext

_EPS = 1e-5  # official box_rel_encoding's eps


def _dim_t(num_pos_feats: int, temperature: float, dtype: torch.dtype,
           device: torch.device) -> Tensor:
    """Frequencies ``temperature ** (2k / num_pos_feats)``, computed in fp32
    as the official ``get_dim_t`` does."""
    dim_t = torch.arange(
        num_pos_feats // 2, dtype=torch.float32, device=device)
    return (temperature**(dim_t * 2 / num_pos_feats)).to(dtype)


def box_relation_bias_pytorch(src_boxes: Tensor,
                              tgt_boxes: Tensor,
                              weight: Tensor,
                              bias: Tensor,
                              temperature: float = 10000.,
                              scale: float = 100.,
                              num_pos_feats: int = 16) -> Tensor:
    """Reference (naive) relation bias: the official computation.

    Materialises the (B, N, M, 4 * num_pos_feats) embedding.

    Args:
        src_boxes (Tensor): (B, N, 4) cxcywh.
        tgt_boxes (Tensor): (B, M, 4) cxcywh.
        weight (Tensor): 1x1 conv weight, (heads, 4 * num_pos_feats[, 1, 1]).
        bias (Tensor): (heads,).

    Returns:
        Tensor: (B, heads, N, M), ReLU-ed.
    """
    with torch.no_grad():
        xy1, wh1 = src_boxes.split([2, 2], -1)
        xy2, wh2 = tgt_boxes.split([2, 2], -1)
        delta_xy = torch.abs(xy1.unsqueeze(-2) - xy2.unsqueeze(-3))
        delta_xy = torch.log(delta_xy / (wh1.unsqueeze(-2) + _EPS) + 1.0)
        delta_wh = torch.log(
            (wh1.unsqueeze(-2) + _EPS) / (wh2.unsqueeze(-3) + _EPS))
        rel = torch.cat([delta_xy, delta_wh], -1)  # (B, N, M, 4)
        dim_t = _dim_t(num_pos_feats, temperature, rel.dtype, rel.device)
        embed = rel.unsqueeze(-1) * scale / dim_t
        embed = torch.stack((embed.sin(), embed.cos()), -1).flatten(-3)
        embed = embed.permute(0, 3, 1, 2)  # (B, 4 * num_pos_feats, N, M)
    weight = weight.reshape(weight.shape[0], -1, 1, 1)
    return F.relu(F.conv2d(embed, weight, bias))


def _as_pair_mask(blocked: Optional[Tensor], n: int,
                  m: int) -> Optional[Tensor]:
    """``blocked`` as a contiguous bool (N, M) tensor when it is one for
    every batch element and head (leading dims of size 1), else None."""
    if blocked is None:
        return None
    while blocked.dim() > 2 and blocked.shape[0] == 1:
        blocked = blocked[0]
    if blocked.shape != (n, m):
        return None
    return blocked.to(torch.bool).contiguous()


def _relation_fake(src: Tensor, tgt: Tensor, weight: Tensor, bias: Tensor,
                   dim_t: Tensor, scale: float, eps: float,
                   blocked: Optional[Tensor]) -> Tensor:
    """Shape of ``relation_forward``'s result, for meta/fake tensors."""
    return src.new_empty(
        (src.shape[0], weight.shape[0], src.shape[1], tgt.shape[1]))


def _relation_backward_fake(src: Tensor, tgt: Tensor, output: Tensor,
                            dim_t: Tensor, grad_output: Tensor, scale: float,
                            eps: float) -> tuple:
    heads, channels = output.shape[1], 8 * dim_t.shape[0]
    return src.new_empty((heads, channels)), src.new_empty((heads, ))


def _relation_setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    src, tgt, _, _, dim_t, scale, eps, _ = inputs
    ctx.save_for_backward(src, tgt, output, dim_t)
    ctx.scale, ctx.eps = scale, eps


def _relation_backward(ctx, grad_output: Tensor) -> tuple:
    """Gradients of the conv weight and bias only (none for the boxes, as
    the official code). -inf (blocked) entries fail the backward's ReLU
    test, so they get no gradient."""
    src, tgt, output, dim_t = ctx.saved_tensors
    grad_weight, grad_bias = torch.ops.vitdense.relation_backward(
        src, tgt, output, dim_t, grad_output.contiguous(), ctx.scale,
        ctx.eps)
    return None, None, grad_weight, grad_bias, None, None, None, None


if _ext.ext is not None:
    torch.library.register_fake('vitdense::relation_forward')(_relation_fake)
    torch.library.register_fake('vitdense::relation_backward')(
        _relation_backward_fake)
    torch.library.register_autograd(
        'vitdense::relation_forward',
        _relation_backward,
        setup_context=_relation_setup_context)


def _check_args(src_boxes: Tensor, tgt_boxes: Tensor, weight: Tensor,
                bias: Tensor, num_pos_feats: int) -> None:
    tensors = dict(
        src_boxes=src_boxes, tgt_boxes=tgt_boxes, weight=weight, bias=bias)
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise ValueError(f'{name} must be a Tensor, got {type(tensor)}')
        if not tensor.dtype.is_floating_point:
            raise ValueError(f'{name} must be floating point, '
                             f'got {tensor.dtype}')
        if tensor.device != src_boxes.device:
            raise ValueError(f'{name} is on {tensor.device} but src_boxes '
                             f'is on {src_boxes.device}')
    if num_pos_feats <= 0 or num_pos_feats % 2:
        raise ValueError('num_pos_feats must be a positive even number, '
                         f'got {num_pos_feats}')
    if src_boxes.dim() != 3 or src_boxes.shape[-1] != 4:
        raise ValueError('src_boxes must be (B, N, 4), got shape '
                         f'{tuple(src_boxes.shape)}')
    if (tgt_boxes.dim() != 3 or tgt_boxes.shape[-1] != 4
            or tgt_boxes.shape[0] != src_boxes.shape[0]):
        raise ValueError(f'tgt_boxes must be ({src_boxes.shape[0]}, M, 4), '
                         f'got shape {tuple(tgt_boxes.shape)}')
    channels = 4 * num_pos_feats
    if weight.dim() not in (2, 4) or weight.shape[1] != channels or (
            weight.dim() == 4 and weight.shape[2:] != (1, 1)):
        raise ValueError(f'weight must be (heads, {channels}) or (heads, '
                         f'{channels}, 1, 1), got {tuple(weight.shape)}')
    if bias.shape != (weight.shape[0], ):
        raise ValueError(f'bias must be ({weight.shape[0]},), got '
                         f'{tuple(bias.shape)}')


def box_relation_bias(src_boxes: Tensor,
                      tgt_boxes: Tensor,
                      weight: Tensor,
                      bias: Tensor,
                      temperature: float = 10000.,
                      scale: float = 100.,
                      num_pos_feats: int = 16,
                      blocked: Optional[Tensor] = None) -> Tensor:
    """Fused Relation-DETR position relation bias.

    Equals :func:`box_relation_bias_pytorch` (up to float rounding) without
    materialising the (B, N, M, 4 * num_pos_feats) embedding. The inputs
    may have different float dtypes (boxes in bf16 and fp32 weights under
    ``torch.autocast``): the result has the widest of them; the kernel
    computes fp16/bf16 in fp32. CUDA tensors run on the kernel only with
    ``VITDENSE_CUDA_OPS=1``, else on the reference (mmcv has no such op;
    see :mod:`vitdense.ops._ext`).

    Args:
        src_boxes (Tensor): (B, N, 4) cxcywh; no gradient flows to boxes.
        tgt_boxes (Tensor): (B, M, 4) cxcywh.
        weight (Tensor): 1x1 conv weight, (heads, 4 * num_pos_feats[, 1, 1]).
        bias (Tensor): (heads,).
        temperature (float): Sine embedding temperature. Default: 10000.
        scale (float): Sine embedding scale. Default: 100.
        num_pos_feats (int): Embedding dims per relation feature.
            Default: 16.
        blocked (Tensor, optional): boolean mask broadcastable to
            (B, heads, N, M); True entries are set to -inf (an attention
            bias that blocks them, e.g. the denoising groups). Default: None.

    Returns:
        Tensor: (B, heads, N, M), ReLU-ed (-inf where ``blocked``).

    Raises:
        ValueError: naming the argument with a wrong type, dtype, device or
            shape.
    """
    _check_args(src_boxes, tgt_boxes, weight, bias, num_pos_feats)
    dtype = src_boxes.dtype
    for tensor in (tgt_boxes, weight, bias):
        dtype = torch.promote_types(dtype, tensor.dtype)
    name, reason = _ext.backend('box_relation_bias', src_boxes.device)
    if name != 'kernel':
        _ext.warn_fallback('box_relation_bias', src_boxes.device, reason)
        output = box_relation_bias_pytorch(
            src_boxes.to(dtype), tgt_boxes.to(dtype), weight.to(dtype),
            bias.to(dtype), temperature, scale, num_pos_feats)
        if blocked is not None:
            output = output.masked_fill(blocked, float('-inf'))
        return output
    compute = dtype if dtype == torch.float64 else torch.float32
    dim_t = _dim_t(num_pos_feats, temperature, compute, src_boxes.device)
    # the kernel skips the pairs of an (N, M) mask; other mask shapes are
    # filled afterwards (out of place: the op's output is saved for its
    # backward)
    in_kernel = _as_pair_mask(blocked, src_boxes.shape[1],
                              tgt_boxes.shape[1])
    output = torch.ops.vitdense.relation_forward(
        src_boxes.detach().to(compute).contiguous(),
        tgt_boxes.detach().to(compute).contiguous(),
        weight.reshape(weight.shape[0], -1).to(compute).contiguous(),
        bias.to(compute).contiguous(), dim_t, float(scale), _EPS, in_kernel)
    if blocked is not None and in_kernel is None:
        output = output.masked_fill(blocked, float('-inf'))
    return output.to(dtype)


class PositionRelationEmbedding(nn.Module):
    """Relation-DETR's ``PositionRelationEmbedding`` on the fused kernel.

    State dict keys match the official class (``pos_proj.0.weight`` of shape
    (num_heads, 4 * embed_dim, 1, 1) and ``pos_proj.0.bias``, from its
    torchvision-style ``Conv2dNormActivation`` without norm), so official
    checkpoints load unchanged.

    Args:
        embed_dim (int): Sine embedding dims per relation feature (the
            official decoder uses 16). Default: 16.
        num_heads (int): Output channels, one bias per attention head.
            Default: 8.
        temperature (float): Sine embedding temperature. Default: 10000.
        scale (float): Sine embedding scale. Default: 100.
    """

    def __init__(self,
                 embed_dim: int = 16,
                 num_heads: int = 8,
                 temperature: float = 10000.,
                 scale: float = 100.):
        super().__init__()
        self.embed_dim = embed_dim
        self.temperature = temperature
        self.scale = scale
        self.pos_proj = nn.Sequential(
            nn.Conv2d(embed_dim * 4, num_heads, kernel_size=1))

    def forward(self,
                src_boxes: Tensor,
                tgt_boxes: Optional[Tensor] = None,
                blocked: Optional[Tensor] = None) -> Tensor:
        """(B, N, 4), (B, M, 4) cxcywh -> (B, num_heads, N, M) bias;
        ``tgt_boxes`` defaults to ``src_boxes``; ``blocked`` entries are
        -inf (see :func:`box_relation_bias`)."""
        if tgt_boxes is None:
            tgt_boxes = src_boxes
        conv = self.pos_proj[0]
        return box_relation_bias(src_boxes, tgt_boxes, conv.weight, conv.bias,
                                 self.temperature, self.scale, self.embed_dim,
                                 blocked)
