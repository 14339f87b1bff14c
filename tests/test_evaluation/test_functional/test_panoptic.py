"""vitdense's PQ equals panopticapi's ``pq_compute`` on
tests/data/panoptic_pq."""
import json
import os.path as osp

import numpy as np
import pytest

from vitdense.evaluation.functional.panoptic import (OFFSET, PQStat, id2rgb,
                                                     pq_compute,
                                                     pq_compute_files,
                                                     pq_compute_single_image,
                                                     pq_results,
                                                     read_panoptic_png, rgb2id)

DATA = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                'panoptic_pq')
TOL = 1e-12


@pytest.fixture(scope='module')
def official():
    with open(osp.join(DATA, 'panopticapi_results.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def fixture_json():
    with open(osp.join(DATA, 'gt.json')) as f:
        gt = json.load(f)
    with open(osp.join(DATA, 'pred.json')) as f:
        pred = json.load(f)
    return gt, {a['image_id']: a for a in pred['annotations']}


def _categories(gt):
    return {c['id']: c for c in gt['categories']}


def _assert_results_equal(ours, theirs):
    for group in ('All', 'Things', 'Stuff'):
        assert ours[group]['n'] == theirs[group]['n'], group
        for key in ('pq', 'sq', 'rq'):
            assert ours[group][key] == pytest.approx(theirs[group][key],
                                                     abs=TOL), (group, key)
    assert sorted(map(str, ours['per_class'])) == sorted(theirs['per_class'])
    for cat_id, values in ours['per_class'].items():
        for key in ('pq', 'sq', 'rq'):
            assert values[key] == pytest.approx(
                theirs['per_class'][str(cat_id)][key], abs=TOL), (cat_id, key)


def _stat_dict(stat):
    return {str(c): {'iou': s.iou, 'tp': s.tp, 'fp': s.fp, 'fn': s.fn}
            for c, s in sorted(stat.pq_per_cat.items())
            if s.tp + s.fp + s.fn}


def _assert_stats_equal(ours, theirs, where):
    assert sorted(ours) == sorted(theirs), where
    for cat_id, stat in theirs.items():
        for key in ('tp', 'fp', 'fn'):
            assert ours[cat_id][key] == stat[key], (where, cat_id, key)
        assert ours[cat_id]['iou'] == pytest.approx(stat['iou'], abs=TOL)


def test_pq_compute_equals_panopticapi(official):
    results = pq_compute(osp.join(DATA, 'gt.json'),
                         osp.join(DATA, 'pred.json'),
                         osp.join(DATA, 'gt'), osp.join(DATA, 'pred'))
    _assert_results_equal(results, official['results'])
    assert results['All']['n'] == 5
    assert results['Things']['n'] == 3 and results['Stuff']['n'] == 2


@pytest.mark.parametrize('nproc', [1, 2])
def test_pq_compute_files_sums_equal_panopticapi(official, fixture_json,
                                                 nproc):
    gt, pred = fixture_json
    matched = [(a, pred[a['image_id']]) for a in gt['annotations']]
    stat = pq_compute_files(matched, osp.join(DATA, 'gt'),
                            osp.join(DATA, 'pred'), _categories(gt),
                            nproc=nproc)
    _assert_stats_equal(_stat_dict(stat), official['per_class_stat'], 'sum')


def test_each_image_equals_panopticapi(official, fixture_json):
    """Perfect, crowd, void, merged, split, shifted, wrong-class, empty,
    only-stuff and IoU-exactly-0.5 images, one by one."""
    gt, pred = fixture_json
    categories = _categories(gt)
    for gt_ann in gt['annotations']:
        name = gt_ann['file_name']
        stat = pq_compute_single_image(
            gt_ann, pred[gt_ann['image_id']],
            read_panoptic_png(osp.join(DATA, 'gt', name)),
            read_panoptic_png(osp.join(DATA, 'pred', name)), categories)
        _assert_stats_equal(_stat_dict(stat),
                            official['per_image_stat'][name], name)


def test_only_stuff_and_no_segment_images(official, fixture_json):
    per_image = official['per_image_stat']
    gt, _ = fixture_json
    segments = {a['file_name']: a['segments_info'] for a in gt['annotations']}
    # 000010: only stuff; 000011/000012: no segments (nothing counts, the
    # predictions of 000012 lie on void)
    assert {s['category_id'] for s in segments['000010.png']} == {4, 5}
    assert segments['000011.png'] == segments['000012.png'] == []
    assert per_image['000011.png'] == per_image['000012.png'] == {}
    stat = pq_compute_single_image(
        {'image_id': 12, 'segments_info': []},
        {'segments_info': [{'id': 5, 'category_id': 1}]},
        np.zeros((3, 4), np.int32), np.full((3, 4), 5), {1: {'isthing': 1}})
    assert _stat_dict(stat) == {}


def test_iou_of_exactly_half_does_not_match():
    gt = np.zeros((4, 4), np.int64)
    gt[:2] = 7                                  # 8 px
    pred = np.zeros((4, 4), np.int64)
    pred[0] = 9                                 # 4 px inside: IoU 0.5
    stat = pq_compute_single_image(
        {'image_id': 1, 'segments_info': [
            {'id': 7, 'category_id': 1, 'iscrowd': 0, 'area': 8}]},
        {'segments_info': [{'id': 9, 'category_id': 1}]}, gt, pred,
        {1: {'isthing': 1}})
    assert (stat[1].tp, stat[1].fp, stat[1].fn) == (0, 1, 1)
    pred[1, 0] = 9                              # 5 px: IoU 0.625
    stat = pq_compute_single_image(
        {'image_id': 1, 'segments_info': [
            {'id': 7, 'category_id': 1, 'iscrowd': 0, 'area': 8}]},
        {'segments_info': [{'id': 9, 'category_id': 1}]}, gt, pred,
        {1: {'isthing': 1}})
    assert (stat[1].tp, stat[1].fp, stat[1].fn) == (1, 0, 0)
    assert stat[1].iou == 5 / 8


def test_pq_average_without_categories_is_nan():
    stat = PQStat()
    stat[1].tp, stat[1].iou = 2, 1.5
    results = pq_results(stat, {1: {'isthing': 1}, 2: {'isthing': 1}})
    assert results['Things'] == {'pq': 0.75, 'sq': 0.75, 'rq': 1.0, 'n': 1}
    assert results['per_class'][2] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
    assert results['Stuff']['n'] == 0
    assert np.isnan(results['Stuff']['pq'])


def test_rgb2id_and_id2rgb_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536, OFFSET - 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[1, 1].tolist() == [0, 0, 1]
    back = rgb2id(rgb)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, ids)
    assert rgb2id((1, 2, 3)) == 1 + 2 * 256 + 3 * 65536
    assert id2rgb(1 + 2 * 256 + 3 * 65536) == [1, 2, 3]
    with pytest.raises(ValueError, match='must lie in'):
        id2rgb(np.array([OFFSET]))


@pytest.mark.parametrize('pred_info, pred_ids, message', [
    ([{'id': 5, 'category_id': 1}], [[5, 6]],
     r'image id 3 \(x.png\): predicted segment ids \[6\] are in the PNG'),
    ([{'id': 5, 'category_id': 1}, {'id': 6, 'category_id': 1}], [[5, 0]],
     r'predicted segment ids \[6\] are in segments_info but not in the PNG'),
    ([{'id': 5, 'category_id': 9}], [[5, 5]],
     r'predicted category ids \[9\] are not categories'),
    ([{'id': 5, 'category_id': 1}], [[5, 5, 5]], r'the prediction is'),
])
def test_bad_prediction_names_image(pred_info, pred_ids, message):
    with pytest.raises(ValueError, match=message):
        pq_compute_single_image(
            {'image_id': 3, 'file_name': 'x.png', 'segments_info': []},
            {'segments_info': pred_info}, np.zeros((1, 2), np.int64),
            np.array(pred_ids), {1: {'isthing': 1}})
