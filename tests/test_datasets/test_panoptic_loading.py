"""mmdet's COCO panoptic dataset + LoadValidatedPanopticAnnotations on the
embedded panoptic shapes, without panopticapi."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from vitdense.datasets.transforms import LoadValidatedPanopticAnnotations

THINGS = ('circle', 'square', 'triangle')
STUFF = ('sky', 'ground')
META = dict(thing_classes=THINGS, stuff_classes=STUFF, classes=THINGS + STUFF)
HAS_PANOPTICAPI = importlib.util.find_spec('panopticapi') is not None


@pytest.fixture
def mmdet_scope():
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _png_ids(path):
    rgb = np.array(Image.open(path)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@pytest.mark.parametrize(
    'dataset_type', ['CocoPanopticDataset', 'ValidatedCocoPanopticDataset'])
def test_pipeline_loads_masks_labels_and_semantic_seg(coco_shapes_root,
                                                      mmdet_scope,
                                                      dataset_type):
    from mmdet.registry import DATASETS
    dataset = DATASETS.build(dict(
        type=dataset_type, data_root=coco_shapes_root, metainfo=META,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadValidatedPanopticAnnotations')]))
    with open(osp.join(coco_shapes_root, 'annotations',
                       'panoptic_val.json')) as f:
        raw = {a['image_id']: a for a in json.load(f)['annotations']}
    num_things = 0
    for index in range(len(dataset)):
        results = dataset[index]
        ids = _png_ids(results['seg_map_path'])
        segments = raw[results['img_id']]['segments_info']
        things = [s for s in segments if s['category_id'] <= 3]
        kept = [s for s in things if not s['iscrowd']]
        masks = results['gt_masks'].masks
        assert masks.shape == (len(kept),) + ids.shape
        for mask, segment in zip(masks, kept):
            np.testing.assert_array_equal(mask, ids == segment['id'])
        # boxes of the non-crowd things (mmdet drops crowds); labels 0..2
        boxes = [[x, y, x + w, y + h] for x, y, w, h in
                 (s['bbox'] for s in kept)]
        np.testing.assert_allclose(results['gt_bboxes'].tensor.numpy(),
                                   np.reshape(boxes, (-1, 4)))
        np.testing.assert_array_equal(results['gt_bboxes_labels'],
                                      [s['category_id'] - 1 for s in kept])
        assert not results['gt_ignore_flags'].any()
        # semantic seg: contiguous labels (things 0..2, stuff 3..4)
        expected = np.full(ids.shape, 255)
        for segment in segments:
            expected[ids == segment['id']] = segment['category_id'] - 1
        np.testing.assert_array_equal(results['gt_seg_map'], expected)
        num_things += len(kept)
    assert num_things > 0


def test_config_pipeline_and_evaluator(coco_shapes_root, repo_root,
                                       mmdet_scope):
    """The embedded panoptic config's dataset packs samples and its
    evaluator scores the ground truth as a prediction at PQ 100."""
    import torch
    import vitdense.evaluation  # noqa: F401
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from mmdet.registry import DATASETS, METRICS
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(repo_root, 'configs', '_base_',
                                   'datasets', 'coco_shapes_panoptic.py'))
    cfg.val_dataloader.dataset.data_root = coco_shapes_root
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    metric = METRICS.build(dict(
        cfg.val_evaluator,
        ann_file=osp.join(coco_shapes_root, 'annotations',
                          'panoptic_val.json'),
        seg_prefix=osp.join(coco_shapes_root, 'annotations',
                            'panoptic_val')))
    assert type(metric).__name__ == 'VitdenseCocoPanopticMetric'
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        sample = dataset[index]['data_samples']
        ids = _png_ids(info['seg_map_path'])
        assert tuple(sample.gt_sem_seg.sem_seg.shape) == (1,) + ids.shape
        assert len(sample.gt_instances.masks) == \
            sum(s['is_thing'] for s in info['segments_info'])
        pan = np.full(ids.shape, len(META['classes']))
        for k, segment in enumerate(info['segments_info']):
            pan[ids == segment['id']] = (segment['category'] +
                                         (k + 1) * INSTANCE_OFFSET)
        metric.process({}, [dict(
            img_id=info['img_id'], img_path=info['img_path'],
            ori_shape=ids.shape,
            pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan[None])))])
    metrics = metric.evaluate(len(dataset))
    assert metrics['coco_panoptic/PQ'] == 100.0
    assert metrics['coco_panoptic/PQ_th'] == metrics['coco_panoptic/PQ_st'] \
        == 100.0


def _results(tmp_path, ids, segments, shape=None):
    path = str(tmp_path / 'pan.png')
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return {'seg_map_path': path, 'segments_info': segments,
            'ori_shape': shape or ids.shape, 'img_path': 'img.jpg',
            'instances': []}


def test_size_mismatch_is_named(tmp_path):
    results = _results(tmp_path, np.full((4, 5), 7), [], shape=(5, 4))
    with pytest.raises(ValueError, match=r'pan.png: the panoptic PNG is 4x5'):
        LoadValidatedPanopticAnnotations(with_bbox=False,
                                         with_label=False)(results)


def test_segment_absent_from_png_is_named(tmp_path):
    results = _results(tmp_path, np.full((4, 5), 7), [
        {'id': 7, 'category': 3, 'is_thing': False},
        {'id': 300, 'category': 0, 'is_thing': True}])
    with pytest.raises(ValueError, match=r'segment ids \[300\]'):
        LoadValidatedPanopticAnnotations(with_bbox=False,
                                         with_label=False)(results)


def test_undecodable_png_is_named(tmp_path):
    path = tmp_path / 'pan.png'
    path.write_bytes(b'not a png')
    results = {'seg_map_path': str(path), 'segments_info': [],
               'ori_shape': (2, 2)}
    with pytest.raises(ValueError, match='pan.png: cannot decode'):
        LoadValidatedPanopticAnnotations(with_bbox=False,
                                         with_label=False)(results)


def test_void_and_unknown_ids_are_ignored_in_semantic_seg(tmp_path):
    ids = np.array([[0, 7], [9, 40]])
    results = LoadValidatedPanopticAnnotations(
        with_bbox=False, with_label=False)(_results(tmp_path, ids, [
            {'id': 7, 'category': 4, 'is_thing': False},
            {'id': 40, 'category': 1, 'is_thing': True}]))
    np.testing.assert_array_equal(results['gt_seg_map'],
                                  [[255, 4], [255, 1]])
    np.testing.assert_array_equal(results['gt_masks'].masks,
                                  [[[0, 0], [0, 1]]])


@pytest.mark.skipif(HAS_PANOPTICAPI, reason='panopticapi is installed')
def test_mmdet_loader_needs_panopticapi():
    """Why the loader exists: mmdet's refuses to be built here."""
    from mmdet.datasets.transforms import LoadPanopticAnnotations
    with pytest.raises(ImportError, match='panopticapi is not installed'):
        LoadPanopticAnnotations()
