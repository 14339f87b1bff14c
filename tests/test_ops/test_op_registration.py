"""vitdense's ops as dispatcher ops (``torch.ops.vitdense``): schemas, fake
kernels and autograd checked by ``torch.library.opcheck``, ``torch.compile``
with ``fullgraph=True``, meta-device builds, checks that never read device
memory, the deterministic-backward switch and the fused softmax."""
import re
import warnings
from pathlib import Path

import pytest
import torch

from vitdense.ops import (MultiScaleDeformableAttention,
                          PositionRelationEmbedding, info,
                          multi_scale_deformable_attn)
from vitdense.ops import multi_scale_deform_attn as msda_module

pytestmark = pytest.mark.skipif(
    not info()['extension'], reason='needs the compiled vitdense._C')
CSRC = Path(msda_module.__file__).parent / 'csrc'
requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not info()['cuda_compiled'],
    reason='needs a GPU and vitdense._C built with CUDA')


def msda_inputs(dtype=torch.float64, device='cpu', seed=0):
    """Odd sizes: 3 levels (one 1x1), 2 heads x 5 dims, 3 points, bs 2."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[5, 3], [2, 4], [1, 1]])
    start = torch.tensor([0, 15, 23])
    value = torch.randn(2, 24, 2, 5, generator=generator, dtype=dtype)
    loc = torch.rand(2, 7, 2, 3, 3, 2, generator=generator,
                     dtype=dtype) * 1.2 - 0.1
    weights = torch.randn(2, 7, 2, 3, 3, generator=generator, dtype=dtype)
    return [t.to(device) for t in (value, shapes, start, loc, weights)]


def relation_inputs(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    src = torch.rand(2, 5, 4, generator=generator, dtype=dtype) * .5 + .1
    tgt = torch.rand(2, 7, 4, generator=generator, dtype=dtype) * .5 + .1
    weight = torch.randn(3, 32, generator=generator, dtype=dtype) * .2
    bias = torch.randn(3, generator=generator, dtype=dtype) * .2
    dim_t = 10000.**(torch.arange(4, dtype=dtype) * 2 / 8)
    return src, tgt, weight, bias, dim_t


@pytest.mark.parametrize('softmax', [False, True])
def test_msda_opcheck(softmax):
    value, shapes, start, loc, weights = msda_inputs()
    args = (value.requires_grad_(), shapes, start, loc.requires_grad_(),
            weights.requires_grad_(), softmax)
    torch.library.opcheck(torch.ops.vitdense.msda_forward.default, args)
    grad = torch.randn(2, 7, 10, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.vitdense.msda_backward.default,
        tuple(t.detach() if isinstance(t, torch.Tensor) else t
              for t in args[:5]) + (grad, softmax, False),
        test_utils=('test_schema', 'test_faketensor'))


@pytest.mark.parametrize('blocked', [False, True])
def test_relation_opcheck(blocked):
    src, tgt, weight, bias, dim_t = relation_inputs()
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(2)) < .3
    args = (src, tgt, weight.requires_grad_(), bias.requires_grad_(), dim_t,
            100., 1e-5, mask if blocked else None)
    torch.library.opcheck(torch.ops.vitdense.relation_forward.default, args)


class Block(torch.nn.Module):
    """MSDA on a query set, then a relation bias over boxes."""

    def __init__(self):
        super().__init__()
        self.msda = MultiScaleDeformableAttention(
            embed_dims=16, num_heads=2, num_levels=3, num_points=3,
            batch_first=True, dropout=0.)
        self.relation = PositionRelationEmbedding(embed_dim=8, num_heads=2)

    def forward(self, query, value, reference_points, shapes, start, boxes):
        out = self.msda(
            query, value=value, reference_points=reference_points,
            spatial_shapes=shapes, level_start_index=start)
        return out.sum() + self.relation(boxes).sum()


def block_inputs(device='cpu'):
    generator = torch.Generator().manual_seed(3)
    shapes = torch.tensor([[5, 3], [2, 4], [1, 1]], device=device)
    start = torch.tensor([0, 15, 23], device=device)
    query = torch.randn(2, 7, 16, generator=generator).to(device)
    value = torch.randn(2, 24, 16, generator=generator).to(device)
    ref = torch.rand(2, 7, 3, 2, generator=generator).to(device)
    boxes = (torch.rand(2, 6, 4, generator=generator) * .5 + .1).to(device)
    return query, value, ref, shapes, start, boxes


def test_compile_fullgraph_matches_eager():
    """No graph break (fullgraph) through both ops, their checks and their
    backward; same loss and gradients as eager."""
    torch.manual_seed(0)
    block = Block()
    for param in block.parameters():  # non-initial weights
        param.data.add_(torch.randn_like(param) * .1)
    inputs = block_inputs()
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend='aot_eager')
    expected = block(*inputs)
    expected.backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    loss = compiled(*inputs)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    for param, grad in zip(block.parameters(), grads):
        torch.testing.assert_close(param.grad, grad)


@pytest.mark.parametrize('opt_in', ['0', '1'])
def test_cuda_backend_choice_compiles_without_graph_break(opt_in,
                                                          monkeypatch):
    """Choosing the backend of CUDA tensors asks the extension and mmcv
    whether they have CUDA kernels: constants to torch.compile, so a
    compiled CUDA model does not break its graph there."""
    monkeypatch.setenv('VITDENSE_CUDA_OPS', opt_in)
    from vitdense.ops import _ext

    def pick(x):
        name, _ = _ext.backend('multi_scale_deformable_attn',
                               torch.device('cuda'))
        return x + ['kernel', 'mmcv', 'reference'].index(name)

    torch._dynamo.reset()
    compiled = torch.compile(pick, fullgraph=True, backend='eager')
    x = torch.zeros(2)
    torch.testing.assert_close(compiled(x), pick(x))


def test_compiled_check_asserts_inconsistent_levels():
    """Under torch.compile the level checks run as torch._assert_async (no
    host read): inconsistent spatial shapes still fail."""
    value, shapes, start, loc, weights = msda_inputs(torch.float32)
    torch._dynamo.reset()
    op = torch.compile(multi_scale_deformable_attn, fullgraph=True,
                       backend='aot_eager')
    assert op(value, shapes, start, loc, weights).shape == (2, 7, 10)
    with pytest.raises(RuntimeError, match='spatial_shapes must be positive'):
        op(value, shapes, start + 1, loc, weights)


def test_meta_device_build_and_forward_shapes():
    """Built and run on the meta device: shapes only, no data read (which
    is also what keeps the checks free of device synchronisation)."""
    with torch.device('meta'):
        block = Block()
    query, value, ref, shapes, start, boxes = block_inputs('meta')
    out = block.msda(query, value=value, reference_points=ref,
                     spatial_shapes=shapes, level_start_index=start)
    assert out.device.type == 'meta' and out.shape == (2, 7, 16)
    bias = block.relation(boxes, boxes[:, :4])
    assert bias.device.type == 'meta' and bias.shape == (2, 2, 6, 4)
    value, shapes, start, loc, weights = msda_inputs(device='meta')
    out = multi_scale_deformable_attn(value, shapes, start, loc, weights,
                                      softmax=True)
    assert out.shape == (2, 7, 10) and out.dtype == torch.float64


def test_levels_off_the_host_are_checked_without_reading_them(monkeypatch):
    """Level tensors are read back (``tolist``) only when they live on the
    host in eager mode; otherwise (device tensors, or while compiling, as
    simulated here) they are checked with ``torch._assert_async``."""
    inputs = msda_inputs()
    asserted, read = [], []
    monkeypatch.setattr(torch, '_assert_async',
                        lambda cond, msg: asserted.append(cond))
    for name in ('tolist', 'item', '__bool__', '__int__'):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name):
            read.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    msda_module._check_args(*inputs)
    assert 'tolist' in read and not asserted  # host: exact checks
    read.clear()
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    msda_module._check_args(*inputs)
    assert read == [] and len(asserted) == 1
    assert asserted[0].item()


@requires_cuda
def test_cuda_call_does_not_synchronise(monkeypatch):
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')
    value, shapes, start, loc, weights = msda_inputs(torch.float32, 'cuda')
    value.requires_grad_()
    multi_scale_deformable_attn(value, shapes, start, loc, weights)  # warm
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        out = multi_scale_deformable_attn(value, shapes, start, loc, weights,
                                          softmax=True)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode('default')


@pytest.mark.parametrize('deterministic', [False, True])
def test_backward_requests_deterministic_kernel(deterministic, monkeypatch):
    """The autograd formula passes torch.are_deterministic_algorithms_enabled()
    to the backward kernel (on CUDA it then sorts instead of atomics)."""
    calls = []
    original = torch.ops.vitdense.msda_backward

    def recorder(*args):
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(torch.ops.vitdense, 'msda_backward', recorder)
    value, shapes, start, loc, weights = msda_inputs()
    value.requires_grad_()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        multi_scale_deformable_attn(value, shapes, start, loc,
                                    weights).sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert calls == [deterministic]


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cuda_deterministic_backward_is_bit_identical(dtype, monkeypatch):
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')
    value, shapes, start, loc, weights = msda_inputs(dtype, 'cuda')
    # many queries on few pixels: heavy contention for atomics
    loc = loc.repeat(1, 300, 1, 1, 1, 1)
    weights = weights.repeat(1, 300, 1, 1, 1)
    grad = torch.randn(2, 2100, 10, device='cuda', dtype=dtype)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        grads = []
        for _ in range(2):
            inputs = [t.clone().requires_grad_() for t in (value, loc,
                                                           weights)]
            multi_scale_deformable_attn(inputs[0], shapes, start, inputs[1],
                                        inputs[2]).backward(grad)
            grads.append([t.grad for t in inputs])
    finally:
        torch.use_deterministic_algorithms(previous)
    for first, second in zip(*grads):
        assert torch.equal(first, second)
    torch.use_deterministic_algorithms(False)
    reference = value.clone().requires_grad_()
    multi_scale_deformable_attn(reference, shapes, start, loc,
                                weights).backward(grad)
    torch.testing.assert_close(grads[0][0].float(), reference.grad.float(),
                               rtol=1e-2 if dtype == torch.bfloat16 else 1e-5,
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-5)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_fused_softmax_equals_softmax_then_op(dtype):
    """Forward and all gradients of the fused softmax equal an explicit
    softmax over each (query, head)'s levels * points, then the op."""
    value, shapes, start, loc, logits = msda_inputs(dtype)
    fused = [t.clone().requires_grad_() for t in (value, loc, logits)]
    split = [t.clone().requires_grad_() for t in (value, loc, logits)]
    out_fused = multi_scale_deformable_attn(
        fused[0], shapes, start, fused[1], fused[2], softmax=True)
    probs = split[2].flatten(-2).softmax(-1).view_as(split[2])
    out_split = multi_scale_deformable_attn(split[0], shapes, start,
                                            split[1], probs)
    grad = torch.randn_like(out_fused)
    out_fused.backward(grad)
    out_split.backward(grad)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else {}
    torch.testing.assert_close(out_fused, out_split, **tol)
    for a, b in zip(fused, split):
        torch.testing.assert_close(a.grad, b.grad, **tol)


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16, torch.float64])
@pytest.mark.parametrize('head_dims', [32, 16, 8, 12])
@pytest.mark.parametrize('softmax', [False, True])
def test_cuda_forward_paths_match_cpu(dtype, head_dims, softmax,
                                      monkeypatch):
    """Vectorised (head_dims a multiple of 16 bytes / dtype dividing 32
    lanes) and scalar forward kernels, with and without the fused softmax,
    against the CPU kernel on the same inputs; gradients too."""
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')
    generator = torch.Generator().manual_seed(4)
    shapes = torch.tensor([[9, 7], [5, 4], [1, 1]])
    start = torch.tensor([0, 63, 83])
    value = torch.randn(2, 84, 3, head_dims, generator=generator).to(dtype)
    loc = (torch.rand(2, 11, 3, 3, 4, 2, generator=generator) * 1.2 -
           0.1).to(dtype)
    weights = torch.randn(2, 11, 3, 3, 4, generator=generator).to(dtype)
    grad = torch.randn(2, 11, 3 * head_dims, generator=generator).to(dtype)
    results = []
    for device in ('cpu', 'cuda'):
        leaves = [t.to(device).requires_grad_() for t in (value, loc,
                                                          weights)]
        out = multi_scale_deformable_attn(
            leaves[0], shapes.to(device), start.to(device), leaves[1],
            leaves[2], softmax=softmax)
        out.backward(grad.to(device))
        results.append([out] + [t.grad for t in leaves])
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(dtype, 2e-2)
    for cpu, cuda in zip(*results):
        torch.testing.assert_close(cuda.cpu().double(), cpu.double(),
                                   rtol=tol, atol=tol)


def test_fused_softmax_gradcheck():
    value, shapes, start, loc, logits = msda_inputs()
    inputs = [t.requires_grad_() for t in (value, loc, logits)]
    assert torch.autograd.gradcheck(
        lambda v, l, w: multi_scale_deformable_attn(
            v, shapes, start, l, w, softmax=True), inputs)


def test_fused_softmax_on_the_reference_path(monkeypatch):
    """Backends without the fused softmax (mmcv, the PyTorch reference)
    get the probabilities computed first: same result."""
    from vitdense.ops import _ext
    value, shapes, start, loc, logits = msda_inputs()
    expected = multi_scale_deformable_attn(value, shapes, start, loc, logits,
                                           softmax=True)
    monkeypatch.setattr(_ext, 'backend', lambda op, device:
                        ('reference', 'test'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the one-time fallback warning
        output = multi_scale_deformable_attn(value, shapes, start, loc,
                                             logits, softmax=True)
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)


def test_fused_softmax_rejects_too_many_weights():
    value, shapes, start, loc, logits = msda_inputs()
    loc = loc.repeat(1, 1, 1, 1, 8, 1)  # 3 levels * 24 points = 72 > 64
    with pytest.raises(ValueError, match='at most 64'):
        multi_scale_deformable_attn(value, shapes, start, loc,
                                    logits.repeat(1, 1, 1, 1, 8),
                                    softmax=True)


def test_host_and_device_math_lives_in_one_header():
    """The bilinear corners, the fused softmax and the Cephes sin/cos are
    defined once (kernel_math.h) and used by both backends."""
    header = (CSRC / 'kernel_math.h').read_text()
    for name in ('bilinear_corners', 'softmax_prob', 'cephes_sincosf'):
        assert re.search(rf'VITDENSE_HD \w+ {name}\(', header), name
    for source in ('cpu/msda_cpu.cpp', 'cuda/msda_cuda.cu',
                   'cpu/relation_cpu.cpp', 'cuda/relation_cuda.cu'):
        text = (CSRC / source).read_text()
        assert '#include "kernel_math.h"' in text, source
        assert '0.63661977236758134f' not in text, source  # no copied sincos
        assert 'floor(' not in text, source  # no copied corner math
