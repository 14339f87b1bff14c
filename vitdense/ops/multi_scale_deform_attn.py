"""Multi-scale deformable attention (MSDA).

`Deformable DETR: Deformable Transformers for End-to-End Object Detection
<https://arxiv.org/abs/2010.04159>`_; official code fundamentalvision/
Deformable-DETR. Semantics follow mmcv 2.1.0 (``mmcv.ops.
multi_scale_deform_attn``): bilinear sampling with zero padding and
``align_corners=False``. Differences from mmcv: the compiled kernel also runs
on CPU (mmcv falls back to ``grid_sample`` there), supports bf16/fp16 with
fp32 accumulation, needs no ``im2col_step``, and its CPU backward is
deterministic. CUDA tensors run on mmcv's CUDA kernel unless
``VITDENSE_CUDA_OPS=1`` (vitdense's CUDA kernel is not verified on a GPU
yet).

The kernels are the dispatcher ops ``torch.ops.vitdense.msda_forward`` and
``msda_backward`` (CPU and CUDA implementations in ``vitdense._C``); their
fake kernels (shapes only, for meta tensors and ``torch.compile``) and their
autograd formula are registered here with :mod:`torch.library`. Argument
checks read no device memory: spatial shapes held on the host are checked
exactly, those on a device with ``torch._assert_async`` (no
synchronisation, so CUDA graphs can capture the op).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from vitdense.registry import MODELS
from . import _ext

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def multi_scale_deformable_attn_pytorch(value: Tensor,
                                        value_spatial_shapes: Tensor,
                                        sampling_locations: Tensor,
                                        attention_weights: Tensor) -> Tensor:
    """Pure-PyTorch MSDA: the reference for tests and ONNX export.

    Same signature and result as mmcv's function of the same name. The
    levels are cut out of ``value`` and reshaped with sizes read from
    ``value_spatial_shapes`` as tensors (mmcv converts them to Python ints),
    so a trace (``torch.onnx.export``) records them as computed from the
    input and one graph serves every input size.

    Args:
        value (Tensor): (bs, num_keys, num_heads, head_dims).
        value_spatial_shapes (Tensor): (num_levels, 2), each row (h, w).
        sampling_locations (Tensor): (bs, num_queries, num_heads, num_levels,
            num_points, 2), (x, y) normalised to [0, 1].
        attention_weights (Tensor): (bs, num_queries, num_heads, num_levels,
            num_points).

    Returns:
        Tensor: (bs, num_queries, num_heads * head_dims).
    """
    bs, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    start = 0
    for level in range(num_levels):
        h, w = value_spatial_shapes[level, 0], value_spatial_shapes[level, 1]
        # (bs, h*w, heads, dims) -> (bs*heads, dims, h, w)
        value_l = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(
            bs * num_heads, head_dims, h, w)
        start = start + h * w
        # (bs, queries, heads, points, 2) -> (bs*heads, queries, points, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(
                value_l,
                grid_l,
                mode='bilinear',
                padding_mode='zeros',
                align_corners=False))
    # (bs*heads, dims, queries, levels*points)
    sampled = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(
        bs * num_heads, 1, num_queries, num_levels * num_points)
    output = (sampled * weights).sum(-1).view(bs, num_heads * head_dims,
                                              num_queries)
    return output.transpose(1, 2).contiguous()


def _check_args(value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, sampling_locations: Tensor,
                attention_weights: Tensor) -> Tuple[Tensor, Tensor]:
    """Validate MSDA inputs; return int64 (spatial_shapes, level_start_index)
    on value's device."""
    tensors = dict(
        value=value,
        spatial_shapes=spatial_shapes,
        level_start_index=level_start_index,
        sampling_locations=sampling_locations,
        attention_weights=attention_weights)
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise ValueError(f'{name} must be a Tensor, got {type(tensor)}')
    for name in ('value', 'sampling_locations', 'attention_weights'):
        if tensors[name].dtype not in _FLOAT_DTYPES:
            raise ValueError(f'{name} must be float16/bfloat16/float32/'
                             f'float64, got {tensors[name].dtype}')
    for name in ('spatial_shapes', 'level_start_index'):
        if tensors[name].dtype.is_floating_point or tensors[
                name].dtype.is_complex or tensors[name].dtype == torch.bool:
            raise ValueError(f'{name} must be an integer tensor, '
                             f'got {tensors[name].dtype}')
    for name in ('sampling_locations', 'attention_weights'):
        if tensors[name].device != value.device:
            raise ValueError(f'{name} is on {tensors[name].device} but value '
                             f'is on {value.device}')
    if value.dim() != 4:
        raise ValueError('value must be (bs, num_keys, num_heads, head_dims), '
                         f'got shape {tuple(value.shape)}')
    bs, num_keys, num_heads, _ = value.shape
    if (sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2
            or sampling_locations.shape[0] != bs
            or sampling_locations.shape[2] != num_heads):
        raise ValueError(
            'sampling_locations must be (bs, num_queries, num_heads, '
            f'num_levels, num_points, 2) with bs={bs}, num_heads={num_heads}, '
            f'got shape {tuple(sampling_locations.shape)}')
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            'attention_weights must be (bs, num_queries, num_heads, '
            f'num_levels, num_points) = {tuple(sampling_locations.shape[:-1])}'
            f', got shape {tuple(attention_weights.shape)}')
    num_levels = sampling_locations.shape[3]
    if spatial_shapes.shape != (num_levels, 2):
        raise ValueError(f'spatial_shapes must be ({num_levels}, 2), got '
                         f'shape {tuple(spatial_shapes.shape)}')
    if level_start_index.shape != (num_levels, ):
        raise ValueError(f'level_start_index must be ({num_levels},), got '
                         f'shape {tuple(level_start_index.shape)}')
    if (spatial_shapes.device.type == 'cpu'
            and level_start_index.device.type == 'cpu'
            and not torch.compiler.is_compiling()):
        _check_levels_on_host(spatial_shapes, level_start_index, num_keys)
    elif 'meta' not in (spatial_shapes.device.type,
                        level_start_index.device.type):
        _assert_levels_async(spatial_shapes, level_start_index, num_keys)
    return (spatial_shapes.to(value.device, torch.long).contiguous(),
            level_start_index.to(value.device, torch.long).contiguous())


def _check_levels_on_host(spatial_shapes: Tensor, level_start_index: Tensor,
                          num_keys: int) -> None:
    """Exact checks, with the numbers, of host-held level tensors."""
    shapes = spatial_shapes.tolist()
    sizes = [h * w for h, w in shapes]
    if any(h <= 0 or w <= 0 for h, w in shapes):
        raise ValueError(f'spatial_shapes must be positive, got {shapes}')
    if sum(sizes) != num_keys:
        raise ValueError(f'spatial_shapes {shapes} sum to {sum(sizes)} '
                         f'positions but value has {num_keys} keys')
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    if level_start_index.tolist() != starts:
        raise ValueError(f'level_start_index must be {starts} for '
                         f'spatial_shapes {shapes}, got '
                         f'{level_start_index.tolist()}')


def _assert_levels_async(spatial_shapes: Tensor, level_start_index: Tensor,
                         num_keys: int) -> None:
    """The same checks on the device, without synchronising: a failure
    raises at the next synchronisation (a device-side assert on CUDA)."""
    shapes = spatial_shapes.long()
    sizes = shapes.prod(1)
    ok = ((shapes > 0).all() & (sizes.sum() == num_keys)
          & (level_start_index.long() == sizes.cumsum(0) - sizes).all())
    torch._assert_async(
        ok, 'multi_scale_deformable_attn: spatial_shapes must be positive, '
        'sum to the number of value keys and match level_start_index')


_SOFTMAX_POINTS = 64  # kMaxSoftmaxPoints in csrc/kernel_math.h


def _msda_fake(value: Tensor, spatial_shapes: Tensor,
               level_start_index: Tensor, sampling_loc: Tensor,
               attn_weight: Tensor, softmax: bool) -> Tensor:
    """Shape of ``msda_forward``'s result, for meta/fake tensors."""
    bs, _, heads, dims = value.shape
    return value.new_empty((bs, sampling_loc.shape[1], heads * dims))


def _msda_backward_fake(value: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor, sampling_loc: Tensor,
                        attn_weight: Tensor, grad_output: Tensor,
                        softmax: bool, deterministic: bool) -> tuple:
    return (torch.empty_like(value), torch.empty_like(sampling_loc),
            torch.empty_like(attn_weight))


def _msda_setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(*inputs[:5])
    ctx.softmax = inputs[5]


def _msda_backward(ctx, grad_output: Tensor) -> tuple:
    """Gradients of value, sampling locations and attention weights (of
    the logits with the fused softmax); deterministic (no atomics on CUDA)
    when ``torch.are_deterministic_algorithms_enabled()``."""
    grad_value, grad_loc, grad_attn = torch.ops.vitdense.msda_backward(
        *ctx.saved_tensors, grad_output.contiguous(), ctx.softmax,
        torch.are_deterministic_algorithms_enabled())
    return grad_value, None, None, grad_loc, grad_attn, None


if _ext.ext is not None:
    torch.library.register_fake('vitdense::msda_forward')(_msda_fake)
    torch.library.register_fake('vitdense::msda_backward')(
        _msda_backward_fake)
    torch.library.register_autograd(
        'vitdense::msda_forward',
        _msda_backward,
        setup_context=_msda_setup_context)


def _mmcv_cuda(value: Tensor, spatial_shapes: Tensor,
               level_start_index: Tensor, sampling_locations: Tensor,
               attention_weights: Tensor) -> Tensor:
    """mmcv's CUDA kernel (fp16/fp32/fp64; bf16 runs in fp32), with the
    whole batch as one im2col step (always a divisor of the batch)."""
    from mmcv.ops.multi_scale_deform_attn import \
        MultiScaleDeformableAttnFunction
    dtype = value.dtype
    if dtype == torch.bfloat16:
        value, sampling_locations, attention_weights = (
            value.float(), sampling_locations.float(),
            attention_weights.float())
    output = MultiScaleDeformableAttnFunction.apply(
        value.contiguous(), spatial_shapes, level_start_index,
        sampling_locations.contiguous(), attention_weights.contiguous(),
        value.shape[0])
    return output.to(dtype)


def multi_scale_deformable_attn(value: Tensor,
                                spatial_shapes: Tensor,
                                level_start_index: Tensor,
                                sampling_locations: Tensor,
                                attention_weights: Tensor,
                                softmax: bool = False) -> Tensor:
    """Multi-scale deformable attention with vitdense's kernels.

    Same result as :func:`multi_scale_deformable_attn_pytorch`. CPU tensors
    run on ``vitdense._C``'s kernel; CUDA tensors on mmcv's CUDA kernel
    unless ``VITDENSE_CUDA_OPS=1`` (see :mod:`vitdense.ops._ext`); the
    reference runs where neither exists (with a one-time warning).
    Non-contiguous inputs are copied to contiguous ones.

    Mixed dtypes (as under ``torch.autocast``, where ``value`` comes out of
    a linear layer in bf16/fp16 while the sampling locations, sums of fp32
    reference points and offsets, stay fp32) are computed in the widest of
    the three dtypes and the result is returned in ``value``'s dtype. mmcv's
    CPU path computes in fp32 too (autocast runs ``grid_sample`` in fp32);
    its CUDA function instead rounds the locations to ``value``'s dtype,
    which in bf16 moves a point by up to 2**-9 of the map width (0.2 px on a
    100 px wide level), so vitdense keeps them exact at the cost of an fp32
    copy of ``value``. Inputs of one low-precision dtype run in it,
    accumulating in fp32 (vitdense's kernels; mmcv's CUDA kernel has no bf16
    and runs it in fp32).

    Args:
        value (Tensor): (bs, num_keys, num_heads, head_dims).
        spatial_shapes (Tensor): integer (num_levels, 2), rows (h, w).
        level_start_index (Tensor): integer (num_levels,), start of each
            level in ``num_keys``.
        sampling_locations (Tensor): (bs, num_queries, num_heads,
            num_levels, num_points, 2), (x, y) in [0, 1].
        attention_weights (Tensor): (bs, num_queries, num_heads, num_levels,
            num_points); logits when ``softmax``.
        softmax (bool): Apply the softmax over each (query, head)'s
            num_levels * num_points weights inside the kernel (as DCNv4's
            FlashDeformAttn), equal to ``attention_weights.flatten(-2)
            .softmax(-1)`` first, without materialising the probabilities;
            at most 64 levels * points. Default: False.

    Returns:
        Tensor: (bs, num_queries, num_heads * head_dims), ``value``'s dtype.

    Raises:
        ValueError: naming the argument that has a wrong type, dtype,
            device or shape, or spatial shapes inconsistent with ``value``.
    """
    spatial_shapes, level_start_index = _check_args(
        value, spatial_shapes, level_start_index, sampling_locations,
        attention_weights)
    num_weights = attention_weights.shape[-2] * attention_weights.shape[-1]
    if softmax and num_weights > _SOFTMAX_POINTS:
        raise ValueError(f'softmax=True takes at most {_SOFTMAX_POINTS} '
                         f'num_levels * num_points, got {num_weights}')
    dtype = value.dtype
    compute = torch.promote_types(
        torch.promote_types(dtype, sampling_locations.dtype),
        attention_weights.dtype)
    inputs = (value.to(compute), sampling_locations.to(compute),
              attention_weights.to(compute))
    name, reason = _ext.backend('multi_scale_deformable_attn', value.device)
    if softmax and name != 'kernel':
        inputs = inputs[:2] + (inputs[2].flatten(-2).softmax(-1).view_as(
            inputs[2]), )
    if name == 'mmcv':
        output = _mmcv_cuda(inputs[0], spatial_shapes, level_start_index,
                            *inputs[1:])
    elif name == 'reference':
        _ext.warn_fallback('multi_scale_deformable_attn', value.device,
                           reason)
        output = multi_scale_deformable_attn_pytorch(inputs[0],
                                                     spatial_shapes,
                                                     *inputs[1:])
    else:
        output = torch.ops.vitdense.msda_forward(
            inputs[0].contiguous(), spatial_shapes, level_start_index,
            inputs[1].contiguous(), inputs[2].contiguous(), softmax)
    return output.to(dtype)


@MODELS.register_module()
class MultiScaleDeformableAttention(BaseModule):
    """Drop-in for ``mmcv.ops.MultiScaleDeformableAttention`` (mmcv 2.1.0).

    Same constructor arguments, forward signature, initialisation and
    state_dict keys (``sampling_offsets``, ``attention_weights``,
    ``value_proj``, ``output_proj``), so mmdet's Deformable DETR / DINO and
    their checkpoints work unchanged; the sampling runs on
    :func:`multi_scale_deformable_attn` on every device.

    Args:
        embed_dims (int): Query/value width. Default: 256.
        num_heads (int): Attention heads. Default: 8.
        num_levels (int): Feature levels. Default: 4.
        num_points (int): Sampling points per head and level. Default: 4.
        im2col_step (int): Accepted for mmcv compatibility only; vitdense's
            kernels need no batch chunking. Default: 64.
        dropout (float): Dropout on the output before the residual.
            Default: 0.1.
        batch_first (bool): Inputs are (bs, n, c) rather than (n, bs, c).
            Default: False.
        norm_cfg (dict, optional): Accepted for mmcv compatibility (mmcv
            stores but never applies it). Default: None.
        init_cfg (dict, optional): mmengine initialisation config.
        value_proj_ratio (float): Width of ``value_proj`` relative to
            ``embed_dims``, as ViT-Adapter/ViT-CoMer's ``ratio``.
            Default: 1.0.
        add_identity (bool): Return ``identity + dropout(output)`` as mmcv.
            False returns the raw projected output with neither dropout nor
            residual, as ViT-Adapter's ``MSDeformAttn``. Default: True.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 im2col_step: int = 64,
                 dropout: float = 0.1,
                 batch_first: bool = False,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 value_proj_ratio: float = 1.0,
                 add_identity: bool = True):
        super().__init__(init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims must be divisible by num_heads, '
                             f'but got {embed_dims} and {num_heads}')
        value_proj_size = int(embed_dims * value_proj_ratio)
        if value_proj_size % num_heads != 0:
            raise ValueError(f'embed_dims * value_proj_ratio = '
                             f'{value_proj_size} must be divisible by '
                             f'num_heads = {num_heads}')
        self.norm_cfg = norm_cfg
        self.dropout = nn.Dropout(dropout)
        self.batch_first = batch_first
        self.im2col_step = im2col_step
        self.embed_dims = embed_dims
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.add_identity = add_identity
        self.sampling_offsets = nn.Linear(
            embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's initialisation: offsets on a ring of directions per head,
        growing with the point index; uniform attention; Xavier projections.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        device = self.sampling_offsets.weight.device
        thetas = torch.arange(
            self.num_heads, dtype=torch.float32,
            device=device) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(
            1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(
            1, self.num_points + 1, dtype=torch.float32,
            device=device).view(1, 1, -1, 1)
        self.sampling_offsets.bias.data = grid.view(-1)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)
        self._is_init = True

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Same arguments as mmcv's ``MultiScaleDeformableAttention``.

        Args:
            query (Tensor): (num_query, bs, embed_dims), or (bs, num_query,
                embed_dims) when ``batch_first``.
            key (Tensor, optional): Unused, as in mmcv.
            value (Tensor, optional): (num_value, bs, embed_dims) (or batch
                first); defaults to ``query``.
            identity (Tensor, optional): Residual; defaults to ``query``.
            query_pos (Tensor, optional): Added to ``query``.
            key_padding_mask (Tensor, optional): (bs, num_value), True for
                padding; those values are zeroed.
            reference_points (Tensor): (bs, num_query, num_levels, 2) points
                or (..., 4) boxes (cx, cy, w, h), normalised.
            spatial_shapes (Tensor): (num_levels, 2), rows (h, w).
            level_start_index (Tensor): (num_levels,).

        Returns:
            Tensor: shaped like ``query``.
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        bs, num_query, _ = query.shape
        _, num_value, _ = value.shape

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, -1)
        sampling_offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2)
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads, self.num_levels * self.num_points)
        attention_weights = attention_weights.softmax(-1).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack(
                [spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            sampling_locations = reference_points[:, :, None, :, None, :] \
                + sampling_offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            sampling_locations = reference_points[:, :, None, :, None, :2] \
                + sampling_offsets / self.num_points \
                * reference_points[:, :, None, :, None, 2:] * 0.5
        else:
            raise ValueError('reference_points must end in 2 or 4 '
                             f'coordinates, got {reference_points.shape[-1]}')
        output = multi_scale_deformable_attn(value, spatial_shapes,
                                             level_start_index,
                                             sampling_locations,
                                             attention_weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        if not self.add_identity:
            return output
        return self.dropout(output) + identity


def convert_mmcv_msda(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``mmcv.ops.MultiScaleDeformableAttention`` in
    ``model`` by vitdense's, keeping configuration, weights, device, dtype
    and train/eval mode. mmdet's DETR layers build mmcv's class directly
    (not through the registry), so this is how a built mmdet model is
    switched to vitdense's kernels. Returns ``model``.
    """
    from mmcv.ops import MultiScaleDeformableAttention as MMCVMSDA
    if isinstance(model, MMCVMSDA):
        raise ValueError('convert_mmcv_msda replaces submodules; wrap the '
                         'attention module in a parent module first')
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, MMCVMSDA):
                continue
            new = MultiScaleDeformableAttention(
                embed_dims=child.embed_dims,
                num_heads=child.num_heads,
                num_levels=child.num_levels,
                num_points=child.num_points,
                im2col_step=child.im2col_step,
                dropout=child.dropout.p,
                batch_first=child.batch_first,
                norm_cfg=child.norm_cfg,
                value_proj_ratio=(child.value_proj.out_features /
                                  child.embed_dims))
            new.load_state_dict(child.state_dict())
            param = child.value_proj.weight
            new.to(device=param.device, dtype=param.dtype)
            new.train(child.training)
            setattr(parent, name, new)
    return model
