"""vitdense.ops multi-scale deformable attention: kernels vs the reference."""
import warnings

import pytest
import torch

from vitdense.ops import (MultiScaleDeformableAttention, info,
                          multi_scale_deformable_attn,
                          multi_scale_deformable_attn_pytorch)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not info()['cuda_compiled'],
    reason='needs a GPU and vitdense._C built with CUDA')


@pytest.fixture
def vitdense_cuda(monkeypatch):
    """CUDA tensors run on vitdense's CUDA kernels, not mmcv's."""
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')

# (bs, spatial shapes, queries, heads, channels per head, points)
CASES = {
    'one_level': (1, [(6, 4)], 5, 1, 3, 2),
    'four_levels_non_square_1x1': (3, [(7, 5), (3, 2), (1, 1), (2, 6)], 9, 8,
                                   12, 4),
    'channels_not_multiple_of_8': (1, [(4, 4), (2, 3)], 4, 8, 5, 3),
    'only_1x1': (3, [(1, 1)], 3, 1, 7, 1),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_inputs(bs, shapes, num_queries, heads, channels, points, dtype,
                seed=0, low=-0.2, high=1.2):
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(
        bs, int(sizes.sum()), heads, channels, generator=generator).to(dtype)
    locations = torch.rand(
        bs, num_queries, heads, len(shapes), points, 2,
        generator=generator) * (high - low) + low
    weights = torch.rand(
        bs, num_queries, heads, len(shapes), points,
        generator=generator).to(dtype)
    return (value, spatial_shapes, level_start_index, locations.to(dtype),
            weights)


def on_pixel_and_border_locations(inputs):
    """Put sampling points exactly on pixel centres, map borders (0, 1),
    half a pixel outside, and far outside."""
    value, spatial_shapes, start, locations, weights = inputs
    locations = locations.clone()
    specials = []
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        xs = [0.0, 1.0, 0.5 / w, 1 - 0.5 / w, -0.5 / w, 1 + 0.5 / w, -3., 4.]
        ys = [0.0, 1.0, 0.5 / h, 1 - 0.5 / h, 1 + 0.5 / h, -0.5 / h, 5., -2.]
        specials.append(torch.tensor(list(zip(xs, ys)), dtype=locations.dtype))
    for level, special in enumerate(specials):
        flat = locations[:, :, :, level].reshape(-1, 2)
        n = min(len(flat), len(special))
        flat[:n] = special[:n]
        locations[:, :, :, level] = flat.view_as(locations[:, :, :, level])
    return value, spatial_shapes, start, locations, weights


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', sorted(CASES))
def test_msda_forward_matches_reference(case, dtype):
    value, shapes, start, locations, weights = make_inputs(
        *CASES[case], dtype)
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations,
                                                   weights)
    output = multi_scale_deformable_attn(value, shapes, start, locations,
                                         weights)
    assert output.shape == expected.shape
    torch.testing.assert_close(output, expected, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_msda_forward_on_pixel_centres_and_borders(dtype):
    inputs = on_pixel_and_border_locations(
        make_inputs(*CASES['four_levels_non_square_1x1'], dtype))
    value, shapes, start, locations, weights = inputs
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations,
                                                   weights)
    output = multi_scale_deformable_attn(*inputs)
    torch.testing.assert_close(output, expected, rtol=0, atol=TOL[dtype])


def test_msda_points_far_outside_give_zero():
    value, shapes, start, locations, weights = make_inputs(
        *CASES['one_level'], torch.float64, low=1.6, high=3.0)
    output = multi_scale_deformable_attn(value, shapes, start, locations,
                                         weights)
    assert torch.count_nonzero(output) == 0


def test_msda_gradcheck_fp64():
    value, shapes, start, locations, weights = make_inputs(
        2, [(4, 3), (2, 2), (1, 1)], 3, 2, 3, 2, torch.float64)
    value.requires_grad_()
    locations.requires_grad_()
    weights.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attn(v, shapes, start, loc,
                                                      w),
        (value, locations, weights))


def test_msda_backward_matches_reference_fp32():
    value, shapes, start, locations, weights = make_inputs(
        *CASES['four_levels_non_square_1x1'], torch.float32)
    grads = []
    for fn in (lambda v, loc, w: multi_scale_deformable_attn(
            v, shapes, start, loc, w),
               lambda v, loc, w: multi_scale_deformable_attn_pytorch(
                   v, shapes, loc, w)):
        leaves = [t.clone().requires_grad_() for t in (value, locations,
                                                       weights)]
        out = fn(*leaves)
        out.backward(torch.cos(torch.arange(out.numel()).view_as(out) * 1.))
        grads.append([t.grad for t in leaves])
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_msda_bf16_accumulates_in_fp32():
    inputs = make_inputs(*CASES['four_levels_non_square_1x1'], torch.float32)
    low = [t.bfloat16() if t.is_floating_point() else t for t in inputs]
    output = multi_scale_deformable_attn(*low)
    assert output.dtype == torch.bfloat16
    # Reference on the same bf16-rounded numbers, in fp32.
    expected = multi_scale_deformable_attn(
        *[t.float() if t.is_floating_point() else t for t in low])
    torch.testing.assert_close(
        output.float(), expected, rtol=1e-2, atol=1e-2)


def test_msda_non_contiguous_inputs_give_the_same_result():
    value, shapes, start, locations, weights = make_inputs(
        *CASES['four_levels_non_square_1x1'], torch.float64)
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3)
    locations_nc = locations.transpose(1, 2).contiguous().transpose(1, 2)
    weights_nc = weights.transpose(0, 1).contiguous().transpose(0, 1)
    assert not value_nc.is_contiguous() and not weights_nc.is_contiguous()
    output = multi_scale_deformable_attn(value_nc, shapes, start,
                                         locations_nc, weights_nc)
    expected = multi_scale_deformable_attn(value, shapes, start, locations,
                                           weights)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)


def _bad(name):
    value, shapes, start, locations, weights = make_inputs(
        2, [(4, 3), (2, 2)], 3, 2, 4, 2, torch.float32)
    args = dict(
        value=value,
        spatial_shapes=shapes,
        level_start_index=start,
        sampling_locations=locations,
        attention_weights=weights)
    breakers = {  # case: (argument, bad replacement)
        'value': ('value', lambda: value.long()),
        'value_shape': ('value', lambda: value[0]),
        'sampling_locations': ('sampling_locations',
                               lambda: locations.int()),
        'sampling_locations_shape': ('sampling_locations',
                                     lambda: locations[:, :, :1]),
        'attention_weights': ('attention_weights', lambda: weights[..., :1]),
        'spatial_shapes': ('spatial_shapes',
                           lambda: torch.tensor([[4, 3], [2, 3]])),
        'spatial_shapes_dtype': ('spatial_shapes', lambda: shapes.float()),
        'level_start_index': ('level_start_index',
                              lambda: torch.tensor([0, 11])),
    }
    key, breaker = breakers[name]
    args[key] = breaker()
    return key, args


@pytest.mark.parametrize('name', [
    'value', 'value_shape', 'sampling_locations', 'sampling_locations_shape',
    'attention_weights', 'spatial_shapes', 'spatial_shapes_dtype',
    'level_start_index'
])
def test_msda_bad_input_raises_value_error_naming_it(name):
    key, args = _bad(name)
    with pytest.raises(ValueError, match=key):
        multi_scale_deformable_attn(**args)


def test_msda_falls_back_to_reference_with_one_warning(monkeypatch):
    from vitdense.ops import _ext
    monkeypatch.setattr(_ext, 'ext', None)
    monkeypatch.setattr(_ext, '_warned', set())
    inputs = make_inputs(*CASES['one_level'], torch.float64)
    with pytest.warns(UserWarning, match='reference'):
        output = multi_scale_deformable_attn(*inputs)
    value, shapes, _, locations, weights = inputs
    torch.testing.assert_close(
        output,
        multi_scale_deformable_attn_pytorch(value, shapes, locations,
                                            weights))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once already
        multi_scale_deformable_attn(*inputs)


def test_info_reports_the_cpu_kernel():
    report = info()
    assert report['extension'] is True, report['error']
    assert report['cpu'] == 'kernel'


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', sorted(CASES))
def test_msda_cuda_forward_matches_reference(case, dtype, vitdense_cuda):
    inputs = [t.cuda() for t in make_inputs(*CASES[case], dtype)]
    value, shapes, start, locations, weights = inputs
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations,
                                                   weights)
    output = multi_scale_deformable_attn(*inputs)
    torch.testing.assert_close(output, expected, rtol=0, atol=TOL[dtype])


@requires_cuda
def test_msda_cuda_gradcheck_fp64(vitdense_cuda):
    value, shapes, start, locations, weights = [
        t.cuda() for t in make_inputs(2, [(4, 3), (2, 2), (1, 1)], 3, 2, 3,
                                      2, torch.float64)
    ]
    leaves = [t.requires_grad_() for t in (value, locations, weights)]
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attn(v, shapes, start, loc,
                                                      w), leaves)


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_msda_cuda_low_precision_close_to_fp32(dtype, vitdense_cuda):
    inputs = [
        t.cuda() for t in make_inputs(*CASES['four_levels_non_square_1x1'],
                                      torch.float32)
    ]
    low = [t.to(dtype) if t.is_floating_point() else t for t in inputs]
    expected = multi_scale_deformable_attn(
        *[t.float() if t.is_floating_point() else t for t in low])
    # fp32 accumulation: only the final rounding to dtype differs.
    torch.testing.assert_close(
        multi_scale_deformable_attn(*low).float(),
        expected,
        rtol=1e-2,
        atol=1e-2)


@pytest.mark.skipif(
    not torch.cuda.is_available() or info()['cuda'][
        'multi_scale_deformable_attn'] != 'mmcv',
    reason="needs a GPU and mmcv's CUDA ops")
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_msda_cuda_default_is_mmcv_and_matches_reference(dtype, monkeypatch):
    monkeypatch.delenv('VITDENSE_CUDA_OPS', raising=False)
    inputs = [
        t.cuda() for t in make_inputs(*CASES['four_levels_non_square_1x1'],
                                      torch.float32)
    ]
    value, shapes, start, locations, weights = inputs
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations,
                                                   weights)
    output = multi_scale_deformable_attn(value.to(dtype), shapes, start,
                                         locations, weights)
    assert output.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(output.float(), expected, rtol=tol, atol=tol)


# ----------------------------------------------------------------- module


def _module_inputs(bs=2, embed_dims=32, num_query=5, batch_first=False,
                   ref_dims=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[6, 5], [3, 3], [2, 1], [1, 1]])
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_value = int(sizes.sum())
    query = torch.randn(num_query, bs, embed_dims, generator=generator)
    value = torch.randn(num_value, bs, embed_dims, generator=generator)
    if batch_first:
        query, value = query.transpose(0, 1), value.transpose(0, 1)
    reference_points = torch.rand(
        bs, num_query, 4, ref_dims, generator=generator)
    mask = torch.zeros(bs, num_value, dtype=torch.bool)
    mask[:, -3:] = True
    return dict(
        query=query,
        value=value,
        query_pos=torch.randn_like(query),
        key_padding_mask=mask,
        reference_points=reference_points,
        spatial_shapes=shapes,
        level_start_index=start)


def _randomise(module, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


@pytest.mark.parametrize('ref_dims', [2, 4])
@pytest.mark.parametrize('batch_first', [False, True])
def test_module_matches_mmcv(batch_first, ref_dims):
    mmcv_ops = pytest.importorskip('mmcv.ops')
    kwargs = dict(
        embed_dims=32, num_heads=4, num_levels=4, num_points=3,
        batch_first=batch_first)
    theirs = mmcv_ops.MultiScaleDeformableAttention(**kwargs).eval()
    _randomise(theirs)
    ours = MultiScaleDeformableAttention(**kwargs).eval()
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    inputs = _module_inputs(batch_first=batch_first, ref_dims=ref_dims)
    torch.testing.assert_close(
        ours(**inputs), theirs(**inputs), rtol=1e-5, atol=1e-5)


def test_module_initialisation_matches_mmcv():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    torch.manual_seed(0)
    theirs = mmcv_ops.MultiScaleDeformableAttention(embed_dims=64)
    torch.manual_seed(0)
    ours = MultiScaleDeformableAttention(embed_dims=64)
    for (name, a), b in zip(theirs.state_dict().items(),
                            ours.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_module_without_identity_returns_raw_projection():
    inputs = _module_inputs(batch_first=True)
    plain = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, batch_first=True).eval()
    _randomise(plain)
    raw = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, batch_first=True, dropout=0.5,
        add_identity=False).train()
    raw.load_state_dict(plain.state_dict())
    torch.testing.assert_close(
        raw(**inputs) + inputs['query'], plain(**inputs))


def test_module_value_proj_ratio_shrinks_value_proj():
    module = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, value_proj_ratio=0.5, batch_first=True)
    assert module.value_proj.out_features == 16
    assert module.output_proj.in_features == 16
    output = module(**_module_inputs(batch_first=True))
    assert output.shape == (2, 5, 32)


def test_module_is_built_by_type_from_the_registry():
    pytest.importorskip('mmcv')  # building imports vitdense.models
    from mmengine.registry import DefaultScope

    from vitdense.registry import MODELS
    with DefaultScope.overwrite_default_scope('vitdense'):
        module = MODELS.build(
            dict(type='MultiScaleDeformableAttention', embed_dims=32,
                 num_heads=4))
    assert isinstance(module, MultiScaleDeformableAttention)
