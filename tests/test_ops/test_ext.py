"""Which backend runs each op: vitdense's CUDA kernels only on opt-in.

No GPU is needed: the facts the decision rests on (a CUDA build of
``vitdense._C``, mmcv's CUDA build, the environment) are patched.
"""
import pytest
import torch

from vitdense import ops
from vitdense.ops import _ext
from vitdense.ops import multi_scale_deform_attn as msda_module

MSDA, RELATION = 'multi_scale_deformable_attn', 'box_relation_bias'
CUDA, CPU = torch.device('cuda'), torch.device('cpu')


class FakeExtension:
    """``vitdense._C`` built with CUDA kernels."""

    @staticmethod
    def with_cuda():
        return True


@pytest.fixture
def cuda_build(monkeypatch):
    """A CUDA build of vitdense._C next to a CUDA build of mmcv."""
    monkeypatch.setattr(_ext, 'ext', FakeExtension())
    monkeypatch.setattr(_ext, 'mmcv_has_cuda_ops', lambda: True)
    monkeypatch.delenv('VITDENSE_CUDA_OPS', raising=False)
    return monkeypatch


def test_cuda_tensors_run_on_mmcv_and_reference_without_opt_in(cuda_build):
    assert _ext.backend(MSDA, CUDA)[0] == 'mmcv'
    assert _ext.backend(RELATION, CUDA)[0] == 'reference'
    report = ops.info()
    assert report['cuda'] == {MSDA: 'mmcv', RELATION: 'reference'}
    assert report['why']['cuda'] == (
        "vitdense's CUDA kernels are not verified on a GPU yet; "
        'VITDENSE_CUDA_OPS=1 uses them')


def test_opt_in_runs_vitdense_cuda_kernels(cuda_build):
    cuda_build.setenv('VITDENSE_CUDA_OPS', '1')
    assert _ext.backend(MSDA, CUDA)[0] == 'kernel'
    assert _ext.backend(RELATION, CUDA)[0] == 'kernel'
    report = ops.info()
    assert report['cuda'] == {MSDA: 'kernel', RELATION: 'kernel'}
    assert report['why']['cuda'] == (
        "vitdense._C's CUDA kernels (VITDENSE_CUDA_OPS=1)")


@pytest.mark.parametrize('value', ['0', ''])
def test_only_the_value_1_opts_in(cuda_build, value):
    cuda_build.setenv('VITDENSE_CUDA_OPS', value)
    assert ops.info()['cuda'] == {MSDA: 'mmcv', RELATION: 'reference'}


def test_opt_in_without_cuda_kernels_says_so(cuda_build):
    cuda_build.setenv('VITDENSE_CUDA_OPS', '1')
    cuda_build.setattr(FakeExtension, 'with_cuda', staticmethod(lambda: 0))
    report = ops.info()
    assert report['cuda'] == {MSDA: 'mmcv', RELATION: 'reference'}
    assert report['why']['cuda'] == (
        'VITDENSE_CUDA_OPS=1 but vitdense._C has no CUDA kernels')


def test_msda_without_mmcv_cuda_ops_runs_the_reference(cuda_build):
    cuda_build.setattr(_ext, 'mmcv_has_cuda_ops', lambda: False)
    assert ops.info()['cuda'] == {MSDA: 'reference', RELATION: 'reference'}


@pytest.mark.parametrize('value', ['0', '1'])
def test_cpu_tensors_run_on_the_kernel_either_way(cuda_build, value):
    cuda_build.setenv('VITDENSE_CUDA_OPS', value)
    report = ops.info()
    assert report['cpu'] == 'kernel'
    assert report['why']['cpu'] == "vitdense._C's CPU kernels"


def test_without_extension_everything_is_the_reference(monkeypatch):
    monkeypatch.setattr(_ext, 'ext', None)
    monkeypatch.setattr(_ext, 'load_error', 'ImportError: no _C')
    monkeypatch.setattr(_ext, 'mmcv_has_cuda_ops', lambda: False)
    monkeypatch.setenv('VITDENSE_CUDA_OPS', '1')
    report = ops.info()
    assert report['cpu'] == 'reference'
    assert report['why']['cpu'] == (
        'vitdense._C is not importable (ImportError: no _C)')
    assert report['why']['cuda'] == ('VITDENSE_CUDA_OPS=1 but vitdense._C '
                                     'is not importable (ImportError: no _C)')


def _msda_inputs():
    generator = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[3, 4], [2, 2]])
    start = torch.tensor([0, 12])
    value = torch.randn(2, 16, 2, 3, generator=generator)
    locations = torch.rand(2, 5, 2, 2, 3, 2, generator=generator)
    weights = torch.rand(2, 5, 2, 2, 3, generator=generator)
    return value, shapes, start, locations, weights


def test_msda_calls_the_backend_the_decision_names(monkeypatch):
    """The op follows ``backend``: 'mmcv' calls mmcv's function, 'reference'
    warns with the reason and runs the reference."""
    inputs = _msda_inputs()
    value, shapes, start, locations, weights = inputs
    expected = msda_module.multi_scale_deformable_attn_pytorch(
        value, shapes, locations, weights)
    calls = []

    def fake_mmcv(*args):
        calls.append(args)
        return expected

    monkeypatch.setattr(msda_module, '_mmcv_cuda', fake_mmcv)
    monkeypatch.setattr(_ext, 'backend', lambda op, device: ('mmcv', 'why'))
    assert ops.multi_scale_deformable_attn(*inputs) is not None
    assert len(calls) == 1 and calls[0][0] is value

    monkeypatch.setattr(_ext, '_warned', set())
    monkeypatch.setattr(_ext, 'backend',
                        lambda op, device: ('reference', 'the reason'))
    with pytest.warns(UserWarning, match='on cpu: the reason; the slow'):
        output = ops.multi_scale_deformable_attn(*inputs)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    assert len(calls) == 1
