"""ViDT+ UQR mask coding (:class:`vitdense.models.layers.DCTMaskCoder`)
against the official ``ProcessorDCT`` + OpenCV DCT and the official
post-processing.

Fixture ``tests/data/vidt/plus_official.pth`` comes from naver-ai/vidt,
branch ``vidt-plus`` a8c48b5 (see ``tests/data/vidt/plus_README.md``).
"""
import os.path as osp

import pytest
import torch

from vitdense.models.layers import DCTMaskCoder
from vitdense.models.layers.dct_mask import dct_matrix, zigzag_indices

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'vidt', 'plus_official.pth')


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=True)


def _blob(size=128):
    yy, xx = torch.meshgrid(torch.arange(size).float(),
                            torch.arange(size).float(),
                            indexing='ij')
    ang = torch.atan2(yy - 60, xx - 70)
    radius = 1 + 0.2 * torch.sin(4 * ang)
    return (((yy - 60) / 40)**2 + ((xx - 70) / 30)**2) < radius**2


def test_zigzag_is_jpeg_order():
    assert zigzag_indices(4).tolist() == [
        0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15
    ]
    assert sorted(zigzag_indices(9).tolist()) == list(range(81))


def test_dct_matrix_is_orthonormal():
    mat = dct_matrix(16)
    torch.testing.assert_close(mat @ mat.T, torch.eye(16, dtype=mat.dtype))


def test_encode_matches_official(official):
    data = official['encode']
    vectors = DCTMaskCoder().encode(data['masks'])
    assert vectors.shape == (4, 256) and vectors.dtype == torch.float32
    assert (vectors - data['vectors']).abs().max() <= 1e-4


def test_decode_matches_official(official):
    data = official['decode']
    masks = DCTMaskCoder().decode(data['vectors'])
    assert masks.dtype == torch.bool and masks.shape == (8, 128, 128)
    assert torch.equal(masks, data['masks'])


def test_round_trip_keeps_a_blob():
    coder = DCTMaskCoder(128, 256)
    mask = _blob()
    back = coder.decode(coder.encode(mask[None]))[0]
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.9


def test_paste_matches_official_postprocess(official):
    """Top-100 of the official ``PostProcess``: our decode + paste of the
    same queries into the same boxes gives the official masks."""
    data = official['postprocess']
    coder = DCTMaskCoder()
    logits = data['pred_logits']
    num_classes = logits.shape[-1]
    for b, res in enumerate(data['results']):
        scores, idx = logits[b].sigmoid().flatten().topk(100)
        torch.testing.assert_close(scores, res['scores'])
        queries = idx // num_classes
        h, w = data['target_sizes'][b].tolist()
        cx, cy, bw, bh = data['pred_boxes'][b, queries].unbind(-1)
        boxes = torch.stack(
            [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        boxes = boxes * torch.tensor([w, h, w, h]).float()
        torch.testing.assert_close(boxes, res['boxes'])
        masks = coder.paste(data['pred_vectors'][b, queries], boxes, (h, w))
        assert masks.shape == (100, h, w)
        assert torch.equal(masks, res['masks'])


def test_crop_masks_crops_to_the_box():
    coder = DCTMaskCoder(mask_size=8, num_coeffs=16)
    masks = torch.zeros(1, 20, 30, dtype=torch.bool)
    masks[0, 5:15, 10:20] = True
    crops = coder.crop_masks(masks, torch.tensor([[10., 5., 20., 15.]]))
    assert crops.shape == (1, 8, 8) and crops.all()
    crops = coder.crop_masks(masks, torch.tensor([[0., 0., 10., 5.]]))
    assert not crops.any()
    assert coder.encode_instances(masks[:0], torch.zeros(0,
                                                         4)).shape == (0, 16)


def test_wrong_shapes_raise_clear_errors():
    coder = DCTMaskCoder(mask_size=16, num_coeffs=10)
    with pytest.raises(ValueError, match=r'encode expects \(N, 16, 16\)'):
        coder.encode(torch.zeros(2, 16, 15))
    with pytest.raises(ValueError, match=r'decode expects \(N, 10\)'):
        coder.decode(torch.zeros(2, 11))
    with pytest.raises(ValueError, match='num_coeffs must be in'):
        DCTMaskCoder(mask_size=4, num_coeffs=17)


def test_paste_without_detections():
    coder = DCTMaskCoder()
    masks = coder.paste(torch.zeros(0, 256), torch.zeros(0, 4), (7, 9))
    assert masks.shape == (0, 7, 9) and masks.dtype == torch.bool
