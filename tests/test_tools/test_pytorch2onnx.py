"""tools/deployment/pytorch2onnx.py: the exported graph, run by onnxruntime
(CPU), gives the PyTorch model's boxes and scores within 1e-3 (labels equal)
at two input sizes for Relation-DETR and DINO (the tiny demo configs,
randomly initialised, batch 2), through a static export per size and through
one ``--dynamic`` export for every batch and size; the export-time
replacements of mmdet's size computations give mmdet's numbers; the export
wrapper is mmdet's ``predict(rescale=False)``; other models are refused by
name."""
import os.path as osp

import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from tools.deployment import pytorch2onnx  # noqa: E402

from ._helpers import REPO_ROOT, run_tool  # noqa: E402

RELATION_DETR = osp.join(REPO_ROOT, 'configs', 'relation_detr',
                         'relation-detr_swin-nano_1xb8-shapes.py')
DINO = osp.join(REPO_ROOT, 'configs', 'demo', 'dino_swin-nano_1xb8-shapes.py')
MASK_RCNN = osp.join(REPO_ROOT, 'configs', 'crossformer',
                     'mask-rcnn_crossformer-nano_1xb2-shapes.py')
# odd sizes, neither a multiple of 32; at 64 high the last feature level is
# one pixel high (torch's exported linspace gave NaN there)
SIZES = ((64, 96), (97, 71))


def _wrapper(config: str) -> pytorch2onnx.DetrExportWrapper:
    torch.manual_seed(0)
    return pytorch2onnx.DetrExportWrapper(
        pytorch2onnx.build_detector(config, None))


def _input_dims(path: str) -> list:
    """The ``images`` input's dims: ints, or names of dynamic axes."""
    import onnx
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return [dim.dim_param or dim.dim_value for dim in dims]


@pytest.mark.slow
@pytest.mark.parametrize('config', [RELATION_DETR, DINO],
                         ids=['relation_detr', 'dino'])
def test_onnxruntime_matches_pytorch_at_two_sizes(config, tmp_path):
    wrapper = _wrapper(config)
    for height, width in SIZES:
        out = str(tmp_path / f'{height}x{width}.onnx')
        pytorch2onnx.export(wrapper, (height, width), out, batch_size=2)
        assert _input_dims(out) == [2, 3, height, width]  # static
        images = torch.rand(2, 3, height, width) * 255
        diffs = pytorch2onnx.compare(wrapper, pytorch2onnx.ort_session(out),
                                     images, atol=1e-3)
        assert diffs['boxes'] <= 1e-3 and diffs['scores'] <= 1e-3
        # a different input gives different outputs: the graph is not
        # constant-folded to the traced image
        other = torch.rand(2, 3, height, width) * 255
        session = pytorch2onnx.ort_session(out)
        first = session.run(['scores'], {'images': images.numpy()})[0]
        second = session.run(['scores'], {'images': other.numpy()})[0]
        assert abs(first - second).max() > 1e-3


def test_export_wrapper_is_mmdet_predict_without_rescale():
    from mmdet.structures import DetDataSample
    wrapper = _wrapper(RELATION_DETR)
    detector = wrapper.detector
    images = torch.rand(2, 3, 80, 72) * 255
    with torch.no_grad():
        boxes, scores, labels = wrapper(images)
        data = detector.data_preprocessor(
            dict(inputs=list(images), data_samples=[
                DetDataSample(metainfo=dict(img_shape=(80, 72)))
                for _ in range(2)
            ]), False)
        results = detector.predict(
            data['inputs'], data['data_samples'], rescale=False)
    assert boxes.shape == (2, 100, 4)
    for i, result in enumerate(results):
        pred = result.pred_instances
        torch.testing.assert_close(boxes[i], pred.bboxes)
        torch.testing.assert_close(scores[i], pred.scores)
        torch.testing.assert_close(labels[i], pred.labels)


def test_unsupported_model_is_refused_by_name():
    detector = pytorch2onnx.build_detector(MASK_RCNN, None)
    with pytest.raises(ValueError, match=r'cannot export MaskRCNN \(config '
                       r'.*mask-rcnn_crossformer-nano.*DeformableDETR'):
        pytorch2onnx.check_exportable(detector, MASK_RCNN)


def test_low_opset_and_padded_size_are_refused(tmp_path):
    wrapper = _wrapper(DINO)
    with pytest.raises(ValueError, match='opset 15 is below 16'):
        pytorch2onnx.export(wrapper, (64, 64), str(tmp_path / 'a.onnx'), 15)
    wrapper.pad_size_divisor = 32
    with pytest.raises(ValueError, match='65x64 is not a multiple of the '
                       "config's pad_size_divisor=32"):
        pytorch2onnx.export(wrapper, (65, 64), str(tmp_path / 'b.onnx'))


@pytest.mark.slow
@pytest.mark.parametrize('config', [RELATION_DETR, DINO],
                         ids=['relation_detr', 'dino'])
def test_dynamic_export_matches_pytorch_at_other_sizes(config, tmp_path):
    """One file traced at batch 1, 112x112 (where Swin's first three stages
    need no window padding) runs at other batches and sizes: smaller with a
    one-pixel-high last level, odd (Swin pads inside to its patch and window
    sizes, the shifted-window mask changes) and larger."""
    wrapper = _wrapper(config)
    out = str(tmp_path / 'dynamic.onnx')
    pytorch2onnx.export(wrapper, (112, 112), out, dynamic=True)
    assert _input_dims(out) == ['batch', 3, 'height', 'width']
    session = pytorch2onnx.ort_session(out)
    for batch, height, width in ((1, 64, 96), (2, 97, 71), (1, 129, 160)):
        images = torch.rand(batch, 3, height, width) * 255
        diffs = pytorch2onnx.compare(wrapper, session, images, atol=1e-3)
        assert diffs['boxes'] <= 1e-3 and diffs['scores'] <= 1e-3
        boxes = session.run(['boxes'], {'images': images.numpy()})[0]
        assert boxes.shape == (batch, 100, 4)
        assert boxes[..., 2].max() <= width
    # boxes reach past the traced 112 pixels: sizes are not frozen
    assert boxes[..., 2].max() > 112


def test_traceable_sizes_give_mmdets_numbers():
    """The export-time replacements (linspace, Swin's padding and
    shifted-window mask) compute what mmdet computes, in eager mode, at a
    size where every Swin stage pads and a shifted block masks."""
    from mmdet.models.backbones.swin import ShiftWindowMSA
    from mmdet.models.layers.transformer.utils import AdaptivePadding
    wrapper = _wrapper(RELATION_DETR)
    images = torch.rand(1, 3, 97, 71) * 255
    with torch.no_grad():
        expected = wrapper(images)
        with pytorch2onnx.traceable_sizes():
            assert AdaptivePadding.forward is pytorch2onnx._adaptive_padding
            assert ShiftWindowMSA.forward is pytorch2onnx._shift_window_msa
            got = wrapper(images)
    assert AdaptivePadding.forward is not pytorch2onnx._adaptive_padding
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want, rtol=0, atol=0)
    for steps in (1, 5, torch.tensor(5)):
        torch.testing.assert_close(
            pytorch2onnx._linspace(0.5, steps - 0.5, steps,
                                   dtype=torch.float32),
            torch.linspace(0.5, float(steps) - 0.5, int(steps)))


def test_msda_reference_exports_with_dynamic_level_sizes(tmp_path):
    """vitdense's MSDA reference reads the level sizes from
    ``spatial_shapes`` as tensors, so one ONNX graph serves other sizes."""
    from vitdense.ops import multi_scale_deformable_attn_pytorch

    class Attention(torch.nn.Module):

        def forward(self, feat, small, locations, weights):
            shapes = torch.stack([
                torch._shape_as_tensor(feat)[2:],
                torch._shape_as_tensor(small)[2:]
            ])
            value = torch.cat([feat.flatten(2), small.flatten(2)], 2)
            value = value.transpose(1, 2).unflatten(2, (2, 4))
            return multi_scale_deformable_attn_pytorch(
                value, shapes, locations, weights)

    def inputs(height, width):
        return (torch.rand(1, 8, height, width),
                torch.rand(1, 8, (height + 1) // 2, (width + 1) // 2),
                torch.rand(1, 5, 2, 2, 3, 2), torch.rand(1, 5, 2, 2, 3))

    out = str(tmp_path / 'msda.onnx')
    names = ['feat', 'small', 'locations', 'weights']
    torch.onnx.export(
        Attention(), inputs(6, 4), out, input_names=names,
        output_names=['out'], opset_version=17, dynamo=False,
        dynamic_axes={
            'feat': {2: 'h', 3: 'w'}, 'small': {2: 'h2', 3: 'w2'}})
    session = pytorch2onnx.ort_session(out)
    for size in ((6, 4), (9, 13)):
        args = inputs(*size)
        got = session.run(None, {
            name: arg.numpy() for name, arg in zip(names, args)})[0]
        torch.testing.assert_close(torch.from_numpy(got), Attention()(*args),
                                   rtol=1e-5, atol=1e-5)


def test_dynamic_export_refuses_a_size_with_too_few_tokens(tmp_path):
    wrapper = _wrapper(RELATION_DETR)
    with pytest.raises(ValueError, match=r'--dynamic: input 32x32 gives 22 '
                       'encoder tokens, fewer than num_queries=100'):
        pytorch2onnx.export(wrapper, (32, 32), str(tmp_path / 'a.onnx'),
                            dynamic=True)


@pytest.mark.slow
def test_cli_exports_and_verifies_a_checkpoint(tmp_path):
    wrapper = _wrapper(RELATION_DETR)
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': wrapper.detector.state_dict()}, checkpoint)
    out = str(tmp_path / 'model.onnx')
    result = run_tool([
        'tools/deployment/pytorch2onnx.py', RELATION_DETR, checkpoint,
        '--shape', '64', '80', '--batch-size', '2', '--out', out, '--verify'
    ])
    assert osp.isfile(out)
    assert 'verified 64x80, batch 2' in result.stdout
    assert 'verified 96x112, batch 2' in result.stdout
    refused = run_tool([
        'tools/deployment/pytorch2onnx.py', MASK_RCNN, 'none', '--shape',
        '64', '64'
    ], check=False)
    assert refused.returncode != 0
    assert 'cannot export' in refused.stderr and 'MaskRCNN' in \
        refused.stderr and 'mask-rcnn_crossformer-nano' in refused.stderr


@pytest.mark.slow
def test_cli_dynamic_export_is_verified_at_other_sizes(tmp_path):
    out = str(tmp_path / 'dino.onnx')
    result = run_tool([
        'tools/deployment/pytorch2onnx.py', DINO, 'none', '--shape', '64',
        '96', '--dynamic', '--out', out, '--verify', '--verify-shape', '97',
        '71'
    ])
    assert 'dynamic batch and size, traced at batch 1, 64x96' in \
        result.stdout
    assert 'verified 64x96, batch 1' in result.stdout
    assert 'verified 97x71, batch 2' in result.stdout
    assert _input_dims(out) == ['batch', 3, 'height', 'width']
    refused = run_tool([
        'tools/deployment/pytorch2onnx.py', DINO, 'none', '--shape', '32',
        '32', '--dynamic', '--out', out
    ], check=False)
    assert refused.returncode != 0
    assert 'fewer than num_queries=100' in refused.stderr
