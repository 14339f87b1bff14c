"""tools/deployment/pytorch2onnx.py: the exported graph, run by onnxruntime
(CPU), gives the PyTorch model's boxes and scores within 1e-3 (labels equal)
at two input sizes for Relation-DETR and DINO (the tiny demo configs,
randomly initialised, batch 2); the export wrapper is mmdet's
``predict(rescale=False)``; other models are refused by name."""
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


@pytest.mark.slow
@pytest.mark.parametrize('config', [RELATION_DETR, DINO],
                         ids=['relation_detr', 'dino'])
def test_onnxruntime_matches_pytorch_at_two_sizes(config, tmp_path):
    wrapper = _wrapper(config)
    for height, width in SIZES:
        out = str(tmp_path / f'{height}x{width}.onnx')
        pytorch2onnx.export(wrapper, (height, width), out, batch_size=2)
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


def test_dynamic_is_refused_with_the_reason():
    with pytest.raises(SystemExit, match='--dynamic is not supported yet'):
        pytorch2onnx.main([DINO, 'none', '--shape', '64', '64', '--dynamic'])


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
