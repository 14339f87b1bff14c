"""ResizeShortestEdgeTrunc: the official Relation-DETR evaluation resize, in
the Relation-DETR COCO configs' test pipeline.

The official rule is ``EvalResize.forward`` in
``models/detectors/base_detector.py`` of xiuqhou/Relation-DETR@b485955
(``min_size=800, max_size=1333`` in
``configs/relation_detr/relation_detr_resnet50_800_1333.py``), applied to
the raw uint8 image inside the model; the pixels come from torchvision's
tensor ``resize`` (``transforms/_functional_tensor.py`` there).
"""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'relation_detr')
CONFIG = ('configs', 'relation_detr', 'relation-detr_r50_8xb2-12e_coco.py')

# (h, w) -> official resized (h, w), printed by the official EvalResize(800,
# 1333) (the fixture script, see tests/data/relation_detr/README.md); mmdet's
# Resize(scale=(1333, 800), keep_ratio=True) rounds instead: 800x1067,
# 800x1067, 800x1081, 800x1009, 53x1333, 1333x86, 1333x518, 800x800
OFFICIAL_SIZES = {
    (480, 640): (800, 1066),
    (375, 500): (799, 1066),
    (185, 250): (800, 1081),
    (161, 203): (800, 1008),
    (57, 1421): (53, 1332),
    (1400, 90): (1333, 85),  # tall
    (301, 117): (1332, 518),  # tall, long edge at the maximum
    (1000, 1000): (800, 800),
}


def official_size(height: int, width: int, min_size: int = 800,
                  max_size: int = 1333) -> tuple:
    """``EvalResize.forward`` (models/detectors/base_detector.py): ratio in
    float32 tensors (``n / t`` is ``t.reciprocal() * n``), size truncated by
    ``.to(int64)``."""
    orig_height, orig_width = torch.tensor((height, width))
    r = min_size / torch.min(orig_height, orig_width)
    r = torch.min(r, max_size / torch.max(orig_height, orig_width))
    return (int((orig_height * r).to(orig_height.dtype)),
            int((orig_width * r).to(orig_width.dtype)))


def official_resize(image: torch.Tensor, size: tuple) -> torch.Tensor:
    """torchvision's tensor ``resize`` of a uint8 (C, H, W) image as
    ``EvalResize`` calls it (bilinear, ``antialias=True``): float32,
    ``interpolate(align_corners=False)``, rounded, back to uint8."""
    out = F.interpolate(
        image[None].float(),
        size=size,
        mode='bilinear',
        align_corners=False,
        antialias=True)
    return out.round().to(torch.uint8)[0]


def config_test_pipeline(repo_root: str):
    """The shipped config's own test pipeline, built."""
    import vitdense.datasets  # noqa: F401  (registers the transforms)
    from mmcv.transforms import Compose
    from mmengine.config import Config
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(repo_root, *CONFIG))
    return Compose(cfg.test_dataloader.dataset.pipeline)


def run_pipeline(pipeline, tmp_path, image_bgr: np.ndarray) -> dict:
    path = str(tmp_path / f'{image_bgr.shape[0]}x{image_bgr.shape[1]}.png')
    mmcv.imwrite(image_bgr, path)
    return pipeline(
        dict(img_path=path, img_id=0, instances=[
            dict(bbox=[1., 2., 9., 7.], bbox_label=0, ignore_flag=0)
        ]))


@pytest.mark.parametrize('shape', list(OFFICIAL_SIZES))
def test_test_pipeline_resizes_to_the_official_size(shape, repo_root,
                                                    tmp_path):
    assert official_size(*shape) == OFFICIAL_SIZES[shape]
    packed = run_pipeline(
        config_test_pipeline(repo_root), tmp_path,
        np.zeros(shape + (3, ), np.uint8))
    meta = packed['data_samples'].metainfo
    new_h, new_w = OFFICIAL_SIZES[shape]
    assert tuple(packed['inputs'].shape) == (3, new_h, new_w)
    assert meta['img_shape'] == (new_h, new_w)
    assert meta['ori_shape'] == shape
    # the exact ratio, so that predictions map back to the original image
    assert meta['scale_factor'] == (new_w / shape[1], new_h / shape[0])


def test_test_pipeline_gives_the_official_resized_pixels(repo_root,
                                                         tmp_path):
    """The fixture's raw images (one upscaled, one downscaled where the
    antialias matters) through the config's test pipeline equal the
    official model's resized images (every 8th pixel stored)."""
    data = torch.load(
        osp.join(DATA, 'relation_detr_tiny_official_resize.pth'),
        weights_only=False)
    pipeline = config_test_pipeline(repo_root)
    for image, shape, every_8th in zip(data['images'],
                                       data['resized_shapes'],
                                       data['resized_every_8th']):
        packed = run_pipeline(pipeline, tmp_path,
                              image.flip(0).permute(1, 2, 0).numpy())
        rgb = packed['inputs'].flip(0)  # LoadImageFromFile reads BGR
        assert tuple(rgb.shape[1:]) == shape
        assert torch.equal(rgb[:, ::8, ::8], every_8th)
        assert torch.equal(rgb, official_resize(image, shape))


def test_resize_keeps_boxes_and_float_images_consistent():
    """Boxes scale by the recorded ratio; float images are interpolated
    without rounding; a grey image keeps its single channel."""
    from mmdet.structures.bbox import HorizontalBoxes

    from vitdense.datasets.transforms import ResizeShortestEdgeTrunc
    resize = ResizeShortestEdgeTrunc(min_size=20, max_size=30)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (11, 13, 3)).astype(np.float32)
    boxes = torch.tensor([[1., 2., 9., 7.]])
    out = resize(dict(img=img, gt_bboxes=HorizontalBoxes(boxes.clone())))
    new_h, new_w = official_size(11, 13, 20, 30)
    assert out['img'].shape == (new_h, new_w, 3) == (20, 23, 3)
    assert out['img'].dtype == np.float32
    expected = F.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None], (new_h, new_w),
        mode='bilinear', align_corners=False, antialias=True)[0]
    torch.testing.assert_close(
        torch.from_numpy(out['img']).permute(2, 0, 1), expected)
    sx, sy = out['scale_factor']
    assert (sx, sy) == (23 / 13, 20 / 11)
    torch.testing.assert_close(out['gt_bboxes'].tensor,
                               boxes * torch.tensor([sx, sy, sx, sy]))
    grey = resize(dict(img=np.zeros((11, 13), np.uint8)))['img']
    assert grey.shape == (20, 23) and grey.dtype == np.uint8


def test_resize_refuses_min_size_above_max_size():
    from vitdense.datasets.transforms import ResizeShortestEdgeTrunc
    with pytest.raises(ValueError, match='min_size=900, max_size=800'):
        ResizeShortestEdgeTrunc(min_size=900, max_size=800)
