"""vitdense.ops relation bias (Relation-DETR): fused kernel vs reference."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitdense.ops import (PositionRelationEmbedding, box_relation_bias,
                          box_relation_bias_pytorch, info)

REPO_ROOT = Path(__file__).resolve().parents[2]
requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not info()['cuda_compiled'],
    reason='needs a GPU and vitdense._C built with CUDA')


@pytest.fixture
def vitdense_cuda(monkeypatch):
    """CUDA tensors run on vitdense's CUDA kernels, not the reference."""
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')

# fp32: the official math itself is only good to ~3e-4 against fp64 (the
# log features are multiplied by scale=100 before sin/cos), so kernel and
# reference may differ by a few ulps of those features; fp64 is exact.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def make_inputs(batch, n, m, heads, num_pos_feats, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def boxes(k):
        xy = torch.rand(batch, k, 2, generator=generator)
        wh = torch.rand(batch, k, 2, generator=generator) * 0.5
        return torch.cat([xy, wh], -1).to(dtype)

    src, tgt = boxes(n), boxes(m)
    tgt[:, :min(n, m)] = src[:, :min(n, m)]  # identical pairs: zero features
    src[:, 0, 2:] = 0  # zero-size source box: largest features
    weight = (torch.randn(heads, 4 * num_pos_feats, generator=generator) *
              0.2).to(dtype)
    bias = (torch.randn(heads, generator=generator) * 0.2).to(dtype)
    return src, tgt, weight, bias


CASES = {
    'square_8_heads': (2, 70, 70, 8, 16),
    'rect_1_head': (1, 5, 131, 1, 16),
    'eight_feats': (3, 9, 4, 2, 8),
}


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', sorted(CASES))
def test_relation_forward_matches_reference(case, dtype):
    *shape, feats = CASES[case]
    src, tgt, weight, bias = make_inputs(*shape, feats, dtype)
    expected = box_relation_bias_pytorch(
        src, tgt, weight, bias, num_pos_feats=feats)
    output = box_relation_bias(src, tgt, weight, bias, num_pos_feats=feats)
    assert output.shape == expected.shape
    torch.testing.assert_close(output, expected, rtol=0, atol=TOL[dtype])


def test_relation_large_arguments_use_the_exact_sincos():
    src, tgt, weight, bias = make_inputs(2, 7, 9, 4, 16, torch.float32)
    src[..., 2:] = 1e-6  # features ~ log(1e5), times scale 1000 > 8192
    expected = box_relation_bias_pytorch(src, tgt, weight, bias, scale=1000.)
    output = box_relation_bias(src, tgt, weight, bias, scale=1000.)
    torch.testing.assert_close(output, expected, rtol=0, atol=2e-3)


def test_relation_gradcheck_fp64_weight_and_bias():
    src, tgt, weight, bias = make_inputs(2, 6, 67, 3, 8, torch.float64)
    weight.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w, b: box_relation_bias(src, tgt, w, b, num_pos_feats=8),
        (weight, bias),
        fast_mode=True)


def test_relation_backward_matches_reference_and_skips_boxes():
    src, tgt, weight, bias = make_inputs(2, 40, 30, 8, 16, torch.float32)
    grads = []
    for fn in (box_relation_bias, box_relation_bias_pytorch):
        leaves = [t.clone().requires_grad_() for t in (src, tgt, weight,
                                                       bias)]
        out = fn(*leaves)
        out.backward(torch.sin(torch.arange(out.numel()).view_as(out) * 1.))
        assert leaves[0].grad is None and leaves[1].grad is None
        grads.append((leaves[2].grad, leaves[3].grad))
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-3)


def make_blocked(n, m, seed=3):
    """Random mask with whole 64-wide kernel tiles blocked in some rows."""
    blocked = torch.rand(n, m, generator=torch.Generator().manual_seed(seed))
    blocked = blocked > .5
    blocked[:n // 2, :128] = True
    return blocked


def check_blocked(src, tgt, weight, bias, blocked):
    """Blocked entries are -inf, the rest and the gradients of weight/bias
    equal the reference's."""
    kept_mask = ~blocked.expand(src.shape[0], weight.shape[0], -1, -1)
    grads = []
    for fn in (box_relation_bias, box_relation_bias_pytorch):
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        if fn is box_relation_bias:
            out = fn(src, tgt, w, b, blocked=blocked)
            assert torch.isneginf(out[~kept_mask]).all()
        else:
            out = fn(src, tgt, w, b)
        kept = out[kept_mask]
        assert torch.isfinite(kept).all()
        (kept * torch.linspace(-1, 1, kept.numel())).sum().backward()
        grads.append((kept.detach(), w.grad, b.grad))
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('mask_shape', ['NM', '11NM', 'B1NM'])
def test_relation_blocked_entries_are_minus_inf_without_gradient(mask_shape):
    # 5 heads and 150 targets: the AVX2 kernel's 4-head blocks plus a
    # single head, two whole 64-wide tiles blocked, a 22-wide tail; (N, M)
    # masks go into the kernel, per-batch ones are filled afterwards
    src, tgt, weight, bias = make_inputs(2, 9, 150, 5, 16, torch.float32)
    blocked = make_blocked(9, 150)
    if mask_shape == '11NM':
        blocked = blocked[None, None]
    elif mask_shape == 'B1NM':
        blocked = torch.stack([blocked, make_blocked(9, 150, seed=4)])[:, None]
    check_blocked(src, tgt, weight, bias, blocked)


def test_relation_portable_kernels_match_reference():
    """The non-AVX2 kernels (forced by VITDENSE_RELATION_GENERIC=1, read once
    per process) give what the AVX2 ones are tested to give."""
    code = ('import sys; sys.path.insert(0, "tests/test_ops"); '
            'import test_relation_attention as t, torch; '
            'args = t.make_inputs(2, 9, 150, 5, 16, torch.float32); '
            't.check_blocked(*args, t.make_blocked(9, 150)); '
            't.test_relation_backward_matches_reference_and_skips_boxes(); '
            'print("portable ok")')
    env = dict(os.environ, VITDENSE_RELATION_GENERIC='1')
    result = subprocess.run([sys.executable, '-c', code],
                            cwd=REPO_ROOT,
                            env=env,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'portable ok' in result.stdout


def test_position_relation_embedding_has_official_keys():
    module = PositionRelationEmbedding(16, 8)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {
        'pos_proj.0.weight': (8, 64, 1, 1),
        'pos_proj.0.bias': (8, )
    }
    src, tgt, _, _ = make_inputs(2, 11, 13, 8, 16, torch.float64)
    module = module.double()
    conv = module.pos_proj[0]
    torch.testing.assert_close(
        module(src, tgt),
        box_relation_bias_pytorch(src, tgt, conv.weight, conv.bias),
        rtol=0,
        atol=1e-10)
    assert module(src).shape == (2, 8, 11, 11)


@pytest.mark.parametrize('name', [
    'src_boxes', 'tgt_boxes', 'weight', 'bias', 'tgt_boxes_dtype',
    'num_pos_feats'
])
def test_relation_bad_input_raises_value_error_naming_it(name):
    src, tgt, weight, bias = make_inputs(2, 5, 6, 4, 16, torch.float32)
    args = dict(src_boxes=src, tgt_boxes=tgt, weight=weight, bias=bias)
    breakers = {
        'src_boxes': lambda: args.update(src_boxes=src[..., :3]),
        'tgt_boxes': lambda: args.update(tgt_boxes=tgt[:1]),
        'weight': lambda: args.update(weight=weight[:, :10]),
        'bias': lambda: args.update(bias=bias[:2]),
        'tgt_boxes_dtype': lambda: args.update(tgt_boxes=tgt.int()),
        'num_pos_feats': lambda: args.update(num_pos_feats=15),
    }
    breakers[name]()
    with pytest.raises(ValueError, match=name.replace('_dtype', '')):
        box_relation_bias(**args)


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_relation_cuda_matches_reference(dtype, vitdense_cuda):
    inputs = [t.cuda() for t in make_inputs(2, 70, 50, 8, 16, dtype)]
    torch.testing.assert_close(
        box_relation_bias(*inputs),
        box_relation_bias_pytorch(*inputs),
        rtol=0,
        atol=TOL[dtype])


@requires_cuda
def test_relation_cuda_gradcheck_fp64(vitdense_cuda):
    src, tgt, weight, bias = [
        t.cuda() for t in make_inputs(2, 6, 67, 3, 8, torch.float64)
    ]
    weight.requires_grad_()
    bias.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w, b: box_relation_bias(src, tgt, w, b, num_pos_feats=8),
        (weight, bias),
        fast_mode=True)
