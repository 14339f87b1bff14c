"""Mono-3D transforms: the 3D boxes, 2D boxes, projected centres, depths
and camera matrices stay consistent through MonoDETR's training pipeline."""
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

from vitdense.datasets import KittiMonoDataset
from vitdense.datasets.transforms import (FilterMono3DAnnotations,
                                          LoadMono3DAnnotations,
                                          Mono3DAffine, Mono3DRandomFlip,
                                          PackMono3DInputs)

#: The label file rounds every field to two decimals.
LABEL_ROUNDING = 0.01
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadMono3DAnnotations'),
    dict(type='PhotoMetricDistortion'),
    dict(type='Mono3DRandomFlip', prob=0.5),
    dict(type='Mono3DAffine', input_size=(1280, 384), crop_prob=1.0,
         scale=0.05, shift=0.05, depth_scale='normal'),
    dict(type='PackMono3DInputs')
]


def box_corners(box: np.ndarray) -> np.ndarray:
    """8 corners (8, 3) of a camera-frame (x, y, z, l, h, w, ry) box with
    (x, y, z) the bottom centre and y pointing down."""
    x, y, z, l, h, w, ry = box
    local = np.array([[l, 0, w], [l, 0, -w], [-l, 0, -w], [-l, 0, w],
                      [l, -2 * h, w], [l, -2 * h, -w], [-l, -2 * h, -w],
                      [-l, -2 * h, w]]) / 2
    rotation = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0],
                         [-np.sin(ry), 0, np.cos(ry)]])
    return local @ rotation.T + [x, y, z]


def project(P: np.ndarray, points: np.ndarray) -> np.ndarray:
    pixels = np.c_[points, np.ones(len(points))] @ P.T
    return pixels[:, :2] / pixels[:, 2:]


def wrapped_difference(a, b):
    return (np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture
def train_dataset(kitti_shapes_root):
    """The training pipeline, built as a ``default_scope='mmdet'`` config
    builds it (PhotoMetricDistortion is mmdet's)."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield KittiMonoDataset(data_root=kitti_shapes_root, split='train',
                               pipeline=TRAIN_PIPELINE)


def loaded(dataset, index):
    """The results of LoadImageFromFile + LoadMono3DAnnotations."""
    from mmcv.transforms import LoadImageFromFile
    results = LoadImageFromFile()(dataset.get_data_info(index))
    return LoadMono3DAnnotations()(results)


def test_training_pipeline_boxes_are_projections_of_3d_boxes(train_dataset):
    """After photometric distortion, flip, crop + scale and the affine, the
    8 corners of each 3D box through ``cam2img``, as a min/max box clipped
    to the (transformed) image, are its 2D box; the projected 3D centre is
    ``centers_2d``."""
    checked, flips, scales = 0, set(), set()
    for seed in range(6):
        np.random.seed(seed)
        for index in range(len(train_dataset)):
            sample = train_dataset[index]['data_samples']
            meta = sample.metainfo
            cam2img, trans = meta['cam2img'], meta['trans_mat']
            ori_h, ori_w = meta['ori_shape']
            # the label file clips boxes to [0, W - 1] x [0, H - 1]
            bounds = np.array([[0, 0, 1.0], [ori_w - 1, ori_h - 1, 1]]) @ \
                trans[:2].T
            low, high = bounds.min(0), bounds.max(0)
            scale = abs(trans[0, 0])
            boxes_3d = sample.gt_instances_3d.bboxes_3d.double().numpy()
            for box_3d, box, centre in zip(
                    boxes_3d, sample.gt_instances.bboxes.numpy(),
                    sample.gt_instances_3d.centers_2d.numpy()):
                pixels = project(cam2img, box_corners(box_3d))
                expected = np.r_[np.clip(pixels.min(0), low, high),
                                 np.clip(pixels.max(0), low, high)]
                np.testing.assert_allclose(box, expected,
                                           atol=LABEL_ROUNDING * scale)
                gravity = box_3d[:3] - [0, box_3d[4] / 2, 0]
                np.testing.assert_allclose(
                    centre, project(cam2img, gravity[None])[0], atol=1e-3)
                checked += 1
            flips.add(meta['flip'])
            scales.add(round(1280 / (ori_w * scale), 6))
    assert checked > 20
    assert flips == {False, True}
    assert len(scales) > 10  # the crop scale varies


def test_cam2img_is_trans_mat_times_p2(train_dataset):
    for seed in range(4):
        np.random.seed(seed)
        meta = train_dataset[0]['data_samples'].metainfo
        mirror = np.diag([-1.0, 1, 1, 1]) if meta['flip'] else np.eye(4)
        np.testing.assert_allclose(
            meta['cam2img'], meta['trans_mat'] @ meta['ori_cam2img'] @ mirror,
            rtol=1e-12, atol=1e-9)
        assert meta['img_shape'] == (384, 1280)


def test_depth_target_scales_with_crop_as_monodetr(train_dataset):
    """MonoDETR's ``depth_scale: normal``: depth = z * crop_scale, where the
    crop of crop_scale times the image is resized to the input width."""
    seen = []
    for seed in range(8):
        np.random.seed(seed)
        sample = train_dataset[1]['data_samples']
        ori_w = sample.metainfo['ori_shape'][1]
        crop_scale = 1280 / (ori_w * abs(sample.metainfo['trans_mat'][0, 0]))
        assert 0.95 - 1e-9 <= crop_scale <= 1.05 + 1e-9
        # the crop centre moves by at most 2 * shift of the image size
        centre = np.linalg.solve(sample.metainfo['trans_mat'], [640, 192, 1])
        ori_h = sample.metainfo['ori_shape'][0]
        assert abs(centre[0] / ori_w - 0.5) <= 0.1 + 1e-9
        assert abs(centre[1] / ori_h - 0.5) <= 0.1 + 1e-9
        z = sample.gt_instances_3d.bboxes_3d[:, 2].double().numpy()
        np.testing.assert_allclose(sample.gt_instances_3d.depths.numpy(),
                                   z * crop_scale, rtol=1e-6)
        seen.append(crop_scale)
    assert np.ptp(seen) > 0.01


@pytest.mark.parametrize('rule, power', [('normal', 1), ('inverse', -1),
                                         ('none', 0)])
def test_depth_scale_rules(kitti_shapes_root, rule, power):
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train')
    results = loaded(dataset, 2)
    z = results['gt_bboxes_3d'][:, 2].copy()
    np.random.seed(0)
    results = Mono3DAffine(crop_prob=1.0, depth_scale=rule)(results)
    crop_scale = 1280 / (results['ori_shape'][1] * results['trans_mat'][0, 0])
    assert abs(crop_scale - 1) > 1e-3
    np.testing.assert_allclose(results['depths'], z * crop_scale**power)


def test_flip_twice_is_identity(kitti_shapes_root):
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train')
    original = loaded(dataset, 3)
    results = loaded(dataset, 3)
    flip = Mono3DRandomFlip(prob=1.0)
    once = flip(results)
    assert once['flip'] is True
    assert not np.allclose(once['gt_bboxes_3d'], original['gt_bboxes_3d'])
    twice = flip(once)
    assert twice['flip'] is False
    for key in ('img', 'gt_bboxes', 'gt_bboxes_3d', 'centers_2d', 'gt_alpha',
                'cam2img', 'trans_mat'):
        np.testing.assert_allclose(twice[key], original[key], atol=1e-9,
                                   err_msg=key)


def test_flip_mirrors_box_angles_and_keeps_alpha_ry_relation(
        kitti_shapes_root):
    """x -> -x, ry -> pi - ry, alpha -> pi - alpha, and still
    alpha = ry - arctan2(x, z) (label rounding), both in [-pi, pi)."""
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train')
    checked = 0
    for index in range(len(dataset)):
        original = loaded(dataset, index)
        flipped = Mono3DRandomFlip(prob=1.0)(loaded(dataset, index))
        x, _, z = flipped['gt_bboxes_3d'][:, :3].T
        ry, alpha = flipped['gt_bboxes_3d'][:, 6], flipped['gt_alpha']
        np.testing.assert_allclose(x, -original['gt_bboxes_3d'][:, 0])
        np.testing.assert_allclose(
            wrapped_difference(ry, np.pi - original['gt_bboxes_3d'][:, 6]),
            0, atol=1e-12)
        np.testing.assert_allclose(
            wrapped_difference(alpha, ry - np.arctan2(x, z)), 0,
            atol=1.5 * LABEL_ROUNDING)
        assert ((-np.pi <= ry) & (ry < np.pi)).all()
        assert ((-np.pi <= alpha) & (alpha < np.pi)).all()
        # the mirrored 2D box is the mirrored image's
        width = original['img_shape'][1]
        np.testing.assert_allclose(flipped['gt_bboxes'][:, [2, 0]],
                                   width - original['gt_bboxes'][:, [0, 2]])
        checked += len(x)
    assert checked > 5


def test_affine_samples_the_image_as_the_official_pil_warp(
        kitti_shapes_root):
    """The official warp is PIL's ``Image.transform(AFFINE, BILINEAR)``,
    which samples at pixel centres i + 0.5; the cv2 warp here must give the
    same image (up to interpolation rounding) inside the source image."""
    height, width = 94, 310
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols * 0.8, rows * 2.5,
                      (cols + rows) * 0.5 + 20 * np.sin(cols / 7)], -1)
    image = np.clip(image, 0, 255).astype(np.uint8)
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train')
    results = loaded(dataset, 0)
    results['img'] = image.copy()
    np.random.seed(3)
    results = Mono3DAffine(crop_prob=1.0)(results)
    trans = results['trans_mat']
    official = np.array(Image.fromarray(image).transform(
        (1280, 384), Image.Transform.AFFINE,
        data=tuple(np.linalg.inv(trans)[:2].reshape(-1)),
        resample=Image.Resampling.BILINEAR))
    v, u = np.mgrid[0:384, 0:1280]
    src_u = (u + 0.5 - trans[0, 2]) / trans[0, 0] - 0.5
    src_v = (v + 0.5 - trans[1, 2]) / trans[1, 1] - 0.5
    inside = ((src_u >= 1) & (src_u <= width - 2) & (src_v >= 1)
              & (src_v <= height - 2))
    assert inside.mean() > 0.5
    difference = np.abs(official.astype(int) - results['img'].astype(int))
    assert difference[inside].max() <= 1


def test_affine_without_crop_maps_the_image_onto_the_input(
        kitti_shapes_root):
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='val')
    results = Mono3DAffine(input_size=(1281, 385))(loaded(dataset, 0))
    s = 1281 / 310
    np.testing.assert_allclose(
        results['trans_mat'],
        [[s, 0, 1281 / 2 - s * 155], [0, s, 385 / 2 - s * 47], [0, 0, 1]])
    assert results['img'].shape == (385, 1281, 3)
    assert results['img_shape'] == (385, 1281)
    np.testing.assert_allclose(results['scale_factor'], (s, s))


def _results_with(objects, img_shape=(384, 1280)):
    """Results holding hand-made objects (2D box, centre, z, truncation,
    occlusion) on an identity geometry."""
    count = len(objects)
    boxes = np.array([o[0] for o in objects], np.float64)
    return dict(
        gt_bboxes=boxes, gt_bboxes_labels=np.zeros(count, np.int64),
        gt_bboxes_3d=np.array([[0, 1, o[2], 4, 1.5, 1.6, 0] for o in objects],
                              np.float64),
        gt_labels_3d=np.arange(count),
        depths=np.array([o[2] for o in objects], np.float64),
        centers_2d=np.array([o[1] for o in objects], np.float64),
        gt_alpha=np.zeros(count),
        gt_truncated=np.array([o[3] for o in objects], np.float64),
        gt_occluded=np.array([o[4] for o in objects]),
        trans_mat=np.diag([2.0, 2.0, 1.0]), img_shape=img_shape)


def test_filter_drops_the_objects_the_official_targets_skip():
    # (2D box in input pixels, projected centre, z, truncation, occlusion);
    # trans_mat scales by 2, so the original height is half the box height
    objects = [
        ([100, 100, 200, 148], [150, 120], 20, 0.0, 0),  # height 24 + 1: kept
        ([100, 100, 200, 146], [150, 120], 20, 0.0, 0),  # 23 + 1 < 25
        ([100, 100, 200, 200], [150, 150], 20, 0.6, 0),  # truncated
        ([100, 100, 200, 200], [150, 150], 20, 0.0, 3),  # occlusion unknown
        ([100, 100, 200, 200], [150, 150], 1.9, 0.0, 0),  # too near
        ([100, 100, 200, 200], [150, 150], 65.1, 0.0, 0),  # too far
        ([1200, 100, 1300, 200], [1280, 150], 20, 0.0, 0),  # centre outside
        ([100, 100, 200, 200], [210, 150], 20, 0.0, 0),  # centre not in box
        ([100, 100, 200, 200], [200, 100], 65, 0.5, 2),  # all limits: kept
    ]
    results = FilterMono3DAnnotations()(_results_with(objects))
    assert results['gt_labels_3d'].tolist() == [0, 8]
    for key in ('gt_bboxes', 'gt_bboxes_3d', 'centers_2d', 'depths',
                'gt_alpha', 'gt_truncated', 'gt_occluded'):
        assert len(results[key]) == 2, key
    kept = FilterMono3DAnnotations(centre_in_input=False, centre_in_box=False,
                                   min_height=0)(_results_with(objects))
    assert kept['gt_labels_3d'].tolist() == [0, 1, 6, 7, 8]


def test_pack_follows_the_data_contract(kitti_shapes_root):
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train')
    results = Mono3DAffine()(loaded(dataset, 1))
    results['img'] = results['img'].astype(np.float32)
    results['img'][0, 0] = (300, -5, 7.6)
    eval_ann_info = results['eval_ann_info']
    packed = PackMono3DInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 384, 1280)
    assert inputs[:, 0, 0].tolist() == [255, 0, 8]
    count = len(results['gt_bboxes'])
    assert count > 0
    assert sample.gt_instances.bboxes.shape == (count, 4)
    assert sample.gt_instances.bboxes.dtype == torch.float32
    assert sample.gt_instances.labels.dtype == torch.int64
    gt_3d = sample.gt_instances_3d
    assert gt_3d.bboxes_3d.shape == (count, 7)
    assert gt_3d.centers_2d.shape == (count, 2)
    assert gt_3d.depths.shape == gt_3d.alpha.shape == (count, )
    assert gt_3d.labels_3d.dtype == torch.int64
    assert sample.eval_ann_info is eval_ann_info
    assert set(sample.metainfo) >= {
        'img_path', 'sample_id', 'ori_shape', 'img_shape', 'pad_shape',
        'cam2img', 'ori_cam2img', 'trans_mat', 'flip', 'scale_factor'}
    assert sample.pad_shape == sample.img_shape == (384, 1280)
    assert sample.ori_shape == (94, 310)
    assert sample.sample_id == dataset.get_data_info(1)['sample_id']


def test_transforms_name_the_missing_loading_step():
    with pytest.raises(KeyError, match='LoadMono3DAnnotations'):
        Mono3DAffine()(dict(img=np.zeros((4, 4, 3), np.uint8),
                            img_shape=(4, 4)))


def test_argument_errors():
    with pytest.raises(ValueError, match='depth_scale'):
        Mono3DAffine(depth_scale='log')
    with pytest.raises(ValueError, match='prob'):
        Mono3DRandomFlip(prob=1.5)
