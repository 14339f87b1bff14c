"""VitdenseCocoPanopticMetric: mmdet's CocoPanopticMetric without
panopticapi, equal to panopticapi on tests/data/panoptic_pq."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET

from vitdense.evaluation.functional.panoptic import (pq_compute,
                                                     read_panoptic_png)
from vitdense.evaluation.metrics import VitdenseCocoPanopticMetric

DATA = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                'panoptic_pq')
META = dict(classes=('circle', 'square', 'triangle', 'sky', 'ground'),
            thing_classes=('circle', 'square', 'triangle'),
            stuff_classes=('sky', 'ground'))
HAS_PANOPTICAPI = importlib.util.find_spec('panopticapi') is not None


@pytest.fixture(scope='module')
def fixture_json():
    with open(osp.join(DATA, 'gt.json')) as f:
        gt = json.load(f)
    with open(osp.join(DATA, 'pred.json')) as f:
        pred = {a['image_id']: a for a in json.load(f)['annotations']}
    with open(osp.join(DATA, 'panopticapi_results.json')) as f:
        official = json.load(f)['results']
    return gt, pred, official


def _data_samples(gt, pred, with_gt_info):
    """mmdet-format data samples (``DetDataSample.to_dict()``): the head's
    ``label + instance * INSTANCE_OFFSET`` ids, void = ``len(classes)``."""
    cat2label = {c['id']: i for i, c in enumerate(gt['categories'])}
    isthing = {c['id']: c['isthing'] for c in gt['categories']}
    samples = []
    for gt_ann in gt['annotations']:
        name = gt_ann['file_name']
        pred_ids = read_panoptic_png(osp.join(DATA, 'pred', name))
        pan = np.full(pred_ids.shape, len(META['classes']), np.int64)
        for k, segment in enumerate(pred[gt_ann['image_id']]['segments_info']):
            pan[pred_ids == segment['id']] = (
                cat2label[segment['category_id']] + (k + 1) * INSTANCE_OFFSET)
        sample = {'img_id': gt_ann['image_id'],
                  'img_path': osp.join('images', name[:-4] + '.jpg'),
                  'ori_shape': pred_ids.shape,
                  'pred_panoptic_seg': {
                      'sem_seg': torch.from_numpy(pan[None])}}
        if with_gt_info:
            sample['seg_map_path'] = osp.join(DATA, 'gt', name)
            sample['segments_info'] = [
                {'id': s['id'], 'category': cat2label[s['category_id']],
                 'is_thing': bool(isthing[s['category_id']])
                 and not s['iscrowd']}
                for s in gt_ann['segments_info']]
        samples.append(sample)
    return samples


def _run(metric, samples):
    metric.dataset_meta = META
    for start in range(0, len(samples), 4):
        metric.process({}, samples[start:start + 4])
    return metric.evaluate(len(samples))


def _assert_official(metrics, official):
    for group, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
        for key in ('pq', 'sq', 'rq'):
            assert metrics[f'coco_panoptic/{key.upper()}{suffix}'] == \
                pytest.approx(100 * official[group][key], abs=1e-10)


@pytest.mark.parametrize('use_ann_file', [True, False])
@pytest.mark.parametrize('write_files', [False, True])
def test_metric_equals_panopticapi(fixture_json, tmp_path, use_ann_file,
                                   write_files):
    """Both of mmdet's modes (scored per batch, or written and scored at the
    end) and both ground-truth sources (ann_file, data samples)."""
    gt, pred, official = fixture_json
    metric = VitdenseCocoPanopticMetric(
        ann_file=osp.join(DATA, 'gt.json') if use_ann_file else None,
        seg_prefix=osp.join(DATA, 'gt'),
        outfile_prefix=str(tmp_path / 'res') if write_files else None,
        nproc=1)
    metrics = _run(metric, _data_samples(gt, pred, not use_ann_file))
    _assert_official(metrics, official)
    assert osp.isdir(tmp_path / 'res.panoptic') == write_files


def test_mmengine_evaluator_with_det_data_samples(fixture_json):
    """As a runner's val loop calls it: DetDataSample outputs, the metric
    built by name by mmengine's Evaluator."""
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import PixelData
    gt, pred, official = fixture_json
    evaluator = Evaluator(dict(type='VitdenseCocoPanopticMetric',
                               ann_file=osp.join(DATA, 'gt.json'),
                               seg_prefix=osp.join(DATA, 'gt')))
    evaluator.dataset_meta = META
    outputs = []
    for sample in _data_samples(gt, pred, False):
        output = DetDataSample(metainfo={k: sample[k] for k in (
            'img_id', 'img_path', 'ori_shape')})
        output.pred_panoptic_seg = PixelData(
            **sample['pred_panoptic_seg'])
        outputs.append(output)
    evaluator.process(outputs[:7], {})
    evaluator.process(outputs[7:], {})
    _assert_official(evaluator.evaluate(len(outputs)), official)


def test_classwise_adds_per_class_numbers(fixture_json):
    gt, pred, official = fixture_json
    metric = VitdenseCocoPanopticMetric(
        ann_file=osp.join(DATA, 'gt.json'), seg_prefix=osp.join(DATA, 'gt'),
        classwise=True)
    metrics = _run(metric, _data_samples(gt, pred, False))
    for cat in gt['categories']:
        for key in ('pq', 'sq', 'rq'):
            assert metrics[f'coco_panoptic/{cat["name"]}_{key.upper()}'] == \
                pytest.approx(100 * official['per_class'][str(cat['id'])][key])


def test_format_only_writes_mmdet_files(fixture_json, tmp_path):
    """PNG + json as mmdet writes them; panopticapi's format, so scoring
    them gives the official numbers."""
    gt, pred, official = fixture_json
    prefix = str(tmp_path / 'res')
    metric = VitdenseCocoPanopticMetric(
        ann_file=osp.join(DATA, 'gt.json'), seg_prefix=osp.join(DATA, 'gt'),
        format_only=True, outfile_prefix=prefix)
    assert _run(metric, _data_samples(gt, pred, False)) == {}
    with open(prefix + '.panoptic.json') as f:
        written = json.load(f)['annotations']
    assert len(written) == len(gt['annotations'])
    first = written[0]
    assert first['file_name'] == '000000.png'
    ids = read_panoptic_png(osp.join(prefix + '.panoptic', '000000.png'))
    assert sorted(np.unique(ids).tolist()) == \
        sorted(s['id'] for s in first['segments_info'])
    assert {s['category_id'] for s in first['segments_info']} <= \
        {1, 2, 3, 4, 5}
    assert all('isthing' in s for s in first['segments_info'])
    empty = read_panoptic_png(osp.join(prefix + '.panoptic', '000008.png'))
    assert not empty.any()  # an empty prediction is all void (id 0)
    results = pq_compute(osp.join(DATA, 'gt.json'), prefix + '.panoptic.json',
                         osp.join(DATA, 'gt'), prefix + '.panoptic')
    assert results['All']['pq'] == pytest.approx(official['All']['pq'])


def test_format_only_needs_outfile_prefix():
    with pytest.raises(ValueError, match='outfile_prefix must be given'):
        VitdenseCocoPanopticMetric(format_only=True)


def test_missing_seg_prefix_is_named(fixture_json):
    gt, pred, _ = fixture_json
    samples = _data_samples(gt, pred, True)
    del samples[0]['seg_map_path']
    metric = VitdenseCocoPanopticMetric()
    metric.dataset_meta = META
    with pytest.raises(ValueError, match='seg_prefix'):
        metric.process({}, samples[:1])


def test_built_by_name_from_an_mmdet_config():
    from mmdet.registry import METRICS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        metric = METRICS.build(dict(type='VitdenseCocoPanopticMetric',
                                    ann_file=osp.join(DATA, 'gt.json'),
                                    seg_prefix=osp.join(DATA, 'gt')))
    assert isinstance(metric, VitdenseCocoPanopticMetric)


@pytest.mark.skipif(HAS_PANOPTICAPI, reason='panopticapi is installed')
@pytest.mark.filterwarnings(  # mmdet's __del__ after its own raise
    'ignore::pytest.PytestUnraisableExceptionWarning')
def test_mmdet_metric_needs_panopticapi():
    """Why the metric exists: mmdet's refuses to be built here."""
    from mmdet.evaluation import CocoPanopticMetric
    with pytest.raises(RuntimeError, match='panopticapi is not installed'):
        CocoPanopticMetric()
