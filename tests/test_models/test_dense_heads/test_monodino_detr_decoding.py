"""MonoDINO-DETR inference decoding against the official decoder, and its
geometry in the original image.

Fixture ``tests/data/monodino_detr_loss/monodino_detr_official.pth`` comes
from JihyeokKim/MonoDINO-DETR@65004cc (see the README there).
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample

from vitdense.models import MonoDINODETRCriterion, decode_predictions
from vitdense.models.dense_heads.monodino_detr_coder import (
    angle_to_bin, bin_to_angle, targets_from_data_samples)

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'monodino_detr_loss', 'monodino_detr_official.pth')


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=False)['decode']


def as_official_rows(result) -> torch.Tensor:
    """cls_id, alpha, x1, y1, x2, y2, h, w, l, x, y, z, ry, score (the
    official ``decode_detections`` row)."""
    boxes = result.bboxes_3d.double()
    return torch.cat([
        result.labels_3d[:, None].double(), result.alpha[:, None].double(),
        result.bboxes.double(), boxes[:, [4, 5, 3]], boxes[:, :3],
        boxes[:, 6:], result.scores_3d[:, None].double()
    ], 1)


def test_decoding_matches_official(official):
    results = decode_predictions(official['outputs'], official['metas'])
    for result, expected in zip(results, official['detections']):
        assert len(result) == len(expected) > 0
        assert result.bboxes_3d.shape == (len(expected), 7)
        assert result.labels_3d.dtype == torch.int64
        rows = as_official_rows(result)
        # everything but the 2D box: camera-frame box, alpha, ry, score
        columns = [0, 1] + list(range(6, 14))
        torch.testing.assert_close(rows[:, columns],
                                   expected[:, columns],
                                   rtol=0,
                                   atol=1e-4)
        # 2D boxes in pixels: the official float32 x_norm * 1242 rounds to
        # ~1e-4 px
        torch.testing.assert_close(rows[:, 2:6],
                                   expected[:, 2:6],
                                   rtol=0,
                                   atol=1e-3)
    # the threshold removed some of the top 50
    assert all(len(d) < 50 for d in official['detections'])


def test_criterion_decode_uses_its_test_cfg(official):
    criterion = MonoDINODETRCriterion(num_classes=3,
                                      test_cfg=dict(topk=5, score_thr=0.0))
    results = criterion.decode(official['outputs'], official['metas'])
    assert [len(r) for r in results] == [5, 5]
    probs = official['outputs']['pred_logits'].sigmoid().flatten(1)
    expected = probs.topk(5, dim=1).values
    depth_confidence = results[0].scores_3d / expected[0]
    assert (depth_confidence > 0).all()
    assert not torch.allclose(results[0].scores_3d, expected[0])


def test_decoding_inverts_the_monodetr_affine_exactly(official):
    """MonoDETR's affine scales both axes by the width ratio; the official
    decoder multiplies by the original size, exact only in x. vitdense
    inverts ``trans_mat``: x-quantities equal the official, and the 3D
    centre projects back onto the predicted centre in the original image
    (as the official ``rect_to_img`` projects, dividing by z)."""
    metas = [
        dict(meta, trans_mat=meta['monodetr_trans_mat'])
        for meta in official['metas']
    ]
    results = decode_predictions(official['outputs'], metas)
    outputs = official['outputs']
    probs = outputs['pred_logits'].sigmoid().flatten(1)
    for image, (result, expected,
                meta) in enumerate(zip(results, official['detections'],
                                       metas)):
        rows = as_official_rows(result)
        same = [0, 1, 2, 4, 6, 7, 8, 9, 11, 12, 13]  # no y, y1, y2
        torch.testing.assert_close(rows[:, same],
                                   expected[:, same],
                                   rtol=0,
                                   atol=1e-3)
        assert (rows[:, 10] - expected[:, 10]).abs().max() > 1e-3

        index = probs[image].topk(50).indices[:len(result)]
        centre = outputs['pred_boxes'][image, index // 3, :2].double()
        centre = centre * torch.tensor([1280.0, 384.0], dtype=torch.float64)
        to_original = np.linalg.inv(meta['trans_mat'])
        expected_pixels = centre.numpy() @ to_original[:2, :2].T + \
            to_original[:2, 2]
        x, y, z, _, h = result.bboxes_3d.double().unbind(-1)[:5]
        points = torch.stack([x, y - h / 2, z, torch.ones_like(z)], -1)
        projected = points.numpy() @ meta['ori_cam2img'].T
        # official rect_to_img / img_to_rect divide by z, not by z + P2[2, 3]
        np.testing.assert_allclose(projected[:, :2] / z.numpy()[:, None],
                                   expected_pixels,
                                   atol=1e-3)


def test_heading_bins_round_trip():
    angle = torch.linspace(-math.pi, math.pi - 1e-3, 97, dtype=torch.float64)
    bins, residual = angle_to_bin(angle)
    assert bins.min() >= 0 and bins.max() <= 11
    assert residual.abs().max() <= math.pi / 12 + 1e-9
    torch.testing.assert_close(bin_to_angle(bins, residual), angle)
    # bin 0 is centred on 0: +-15 degrees; 180 degrees is bin 6
    assert angle_to_bin(torch.tensor([0.2, -0.2,
                                      math.pi]))[0].tolist() == [0, 0, 6]


def test_targets_name_the_missing_metainfo():
    sample = DetDataSample(metainfo=dict(img_shape=(384, 1280)))
    with pytest.raises(KeyError, match="no 'cam2img'"):
        targets_from_data_samples([sample])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_decoding_runs_on_cuda(official):
    outputs = {k: v.cuda() for k, v in official['outputs'].items()}
    results = decode_predictions(outputs, official['metas'])
    for result, expected in zip(results, official['detections']):
        assert result.bboxes_3d.is_cuda
        rows = as_official_rows(result.cpu())
        torch.testing.assert_close(rows[:, 9:13], expected[:, 9:13], rtol=0,
                                   atol=1e-4)
