"""vitdense's KITTI evaluator against the official devkit's numbers
(tests/data/kitti_eval, see its README) and its rotated IoU against
shapely."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import shapely

from vitdense.evaluation.functional import kitti_eval, read_kitti_label_dir
from vitdense.evaluation.functional.rotated_iou import (bev_box_intersection,
                                                        bev_box_iou,
                                                        box2d_iou, box3d_iou)

DATA = osp.join(osp.dirname(__file__), '..', '..', 'data', 'kitti_eval')


@pytest.fixture(scope='module')
def fixture():
    with open(osp.join(DATA, 'official_results.json')) as f:
        official = json.load(f)
    gt = read_kitti_label_dir(osp.join(DATA, 'gt'))
    dt = read_kitti_label_dir(osp.join(DATA, 'pred'))
    return gt, dt, official


def _assert_equal_to(results, expected):
    assert sorted(results) == sorted(expected)
    diff = {k: (results[k], v) for k, v in expected.items()
            if abs(results[k] - v) > 1e-4}
    assert not diff, diff


def test_kitti_eval_equals_official_devkit(fixture):
    gt, dt, official = fixture
    table, results = kitti_eval(gt, dt, official['classes'])
    # 5 classes x 2 overlap sets x 4 types x 3 difficulties x R11/R40
    assert len(official['results']) == 240
    _assert_equal_to(results, official['results'])
    # the fixture is not trivial: the main classes' APs spread, none 100
    values = np.array([v for k, v in results.items()
                       if k.split('_')[0] in ('Car', 'Pedestrian', 'Cyclist')])
    assert 10 < values.min() and values.max() < 90 and values.std() > 5
    assert 'Car AP_R40@0.70, 0.70, 0.70:' in table
    assert 'Car AP_R11@0.70, 0.50, 0.50:' in table
    car = results['Car_3D_moderate_R40']
    assert f'3d   AP:{results["Car_3D_easy_R40"]:.4f}, {car:.4f}' in table


def test_kitti_eval_equals_monodino_detr_vendored_devkit(fixture):
    """MonoDINO-DETR's vendored copy computes R40 itself (get_mAP_R40)."""
    gt, dt, _ = fixture
    with open(osp.join(DATA, 'monodino_detr_results.json')) as f:
        vendored = json.load(f)
    _, results = kitti_eval(gt, dt, vendored['classes'])
    assert len(vendored['results']) == 144
    _assert_equal_to(results, vendored['results'])


def test_kitti_eval_default_classes_and_eval_types(fixture):
    gt, dt, official = fixture
    _, results = kitti_eval(gt, dt)
    expected = {k: v for k, v in official['results'].items()
                if k.split('_')[0] in ('Car', 'Pedestrian', 'Cyclist')}
    _assert_equal_to(results, expected)
    table, results = kitti_eval(gt, dt, ('Pedestrian', ), eval_types=('3d', ))
    expected = {k: v for k, v in official['results'].items()
                if k.startswith('Pedestrian_3D_')}
    _assert_equal_to(results, expected)
    assert 'bbox AP' not in table and '3d   AP' in table


def test_kitti_eval_aos_alone_needs_no_2d_keys(fixture):
    gt, dt, official = fixture
    _, results = kitti_eval(gt, dt, ('Car', ), eval_types=('aos', ))
    expected = {k: v for k, v in official['results'].items()
                if k.startswith('Car_AOS_')}
    _assert_equal_to(results, expected)


def test_kitti_eval_without_alpha_has_no_aos(fixture):
    """The devkit scores AOS only when the first non-empty detection frame
    has an alpha other than -10."""
    gt, dt, official = fixture
    dt = copy.deepcopy(dt)
    for anno in dt:
        anno['alpha'][:] = -10
    _, results = kitti_eval(gt, dt, ('Car', ))
    expected = {k: v for k, v in official['results'].items()
                if k.startswith('Car_') and '_AOS_' not in k}
    _assert_equal_to(results, expected)


def test_kitti_eval_empty_frames_change_nothing(fixture):
    gt, dt, official = fixture
    empty = {key: value[:0] for key, value in gt[0].items()}
    assert len(gt[5]['name']) == 0  # the fixture has empty frames too
    _, results = kitti_eval([empty] + gt + [empty, empty],
                            [empty] + dt + [empty, empty], ('Cyclist', ))
    expected = {k: v for k, v in official['results'].items()
                if k.startswith('Cyclist_')}
    _assert_equal_to(results, expected)


def test_kitti_eval_without_detections_or_ground_truth(fixture):
    gt, dt, _ = fixture
    no_dt = [{key: value[:0] for key, value in anno.items()} for anno in dt]
    no_gt = [{key: value[:0] for key, value in anno.items()} for anno in gt]
    for gt_annos, dt_annos in ((gt, no_dt), (no_gt, dt), (no_gt, no_dt)):
        _, results = kitti_eval(gt_annos, dt_annos, ('Car', ))
        assert results and set(results.values()) == {0.0}
        assert any('_AOS_' in k for k in results) == (dt_annos is dt)


def test_kitti_eval_perfect_detections_score_100(fixture):
    gt, _, _ = fixture
    dt = copy.deepcopy(gt)
    for anno in dt:
        anno['score'] = np.ones(len(anno['name']))
    # Car has more than 40 objects at every difficulty (fewer would leave
    # recall points without a threshold, see the test below)
    _, results = kitti_eval(gt, dt, ('Car', ))
    assert set(np.round(list(results.values()), 6)) == {100.0}


def _frame(rows, score=False):
    """A frame of (name, bbox, location, score) rows, Car-sized boxes."""
    return {
        'name': np.array([r[0] for r in rows]),
        'truncated': np.zeros(len(rows)),
        'occluded': np.zeros(len(rows), np.int64),
        'alpha': np.zeros(len(rows)),
        'bbox': np.array([r[1] for r in rows], float),
        'dimensions': np.tile([3.9, 1.5, 1.6], (len(rows), 1)),
        'location': np.array([r[2] for r in rows], float),
        'rotation_y': np.zeros(len(rows)),
        'score': np.array([r[3] if score else 0 for r in rows], float)}


def test_kitti_eval_dontcare_and_neighbour_classes():
    """A detection inside a DontCare region is no 2D false positive (it is
    one in BEV/3D); a Car detection on a Van is neither TP nor FP for Car.
    50 frames so that the 41 recall thresholds all see every object."""
    car = ('Car', [100, 100, 200, 180], [0, 1.6, 10], 0.5)
    van = ('Van', [400, 100, 500, 180], [5, 1.6, 10], 0.8)
    dontcare = ('DontCare', [700, 100, 900, 200], [-1000] * 3, 0)
    on_van = ('Car', [400, 100, 500, 180], [5, 1.6, 10], 0.8)
    on_dontcare = ('Car', [720, 120, 800, 180], [30, 1.6, 30], 0.7)
    dt = [_frame([car, on_van, on_dontcare], score=True)] * 50

    def car_ap(gt_rows):
        _, results = kitti_eval([_frame(gt_rows)] * 50, dt, ('Car', ))
        return results['Car_2D_easy_R40'], results['Car_3D_easy_R40']

    assert car_ap([car, van, dontcare]) == pytest.approx((100, 50))
    assert car_ap([car, van, ('Misc', ) + dontcare[1:]]) == pytest.approx(
        (50, 50))
    # without the neighbour class the detection on the Van is a false one
    assert car_ap([car, ('Truck', ) + van[1:], dontcare]) == pytest.approx(
        (50, 100 / 3))


def test_kitti_eval_few_objects_follow_devkit_recall_steps():
    """The devkit's 41 thresholds step through true positives: one found
    object gives precision 1 at the first point only, which R11 counts and
    R40 (points 1..40) does not."""
    car = ('Car', [100, 100, 200, 180], [0, 1.6, 10], 0.9)
    _, results = kitti_eval([_frame([car])], [_frame([car], score=True)],
                            ('Car', ))
    assert results['Car_3D_easy_R40'] == 0
    assert results['Car_3D_easy_R11'] == pytest.approx(100 / 11)


@pytest.mark.parametrize('gt_annos, dt_annos, error, match', [
    ([], [], ValueError, 'no frames'),
    ('frames', [], TypeError, 'gt_annos must be a list'),
    ([{'name': ['Car']}], [{}], KeyError,
     r"gt_annos\[0\] lacks \['truncated'"),
])
def test_kitti_eval_rejects_malformed_input(gt_annos, dt_annos, error, match):
    with pytest.raises(error, match=match):
        kitti_eval(gt_annos, dt_annos)


def test_kitti_eval_names_the_bad_frame_and_key(fixture):
    gt, dt, _ = fixture
    with pytest.raises(ValueError, match='gt_annos has 80 frames but '
                       'dt_annos has 79'):
        kitti_eval(gt, dt[:-1])
    broken = copy.deepcopy(dt)
    broken[4]['bbox'] = broken[4]['bbox'][:, :3]
    n = len(broken[4]['name'])
    assert n > 0
    with pytest.raises(ValueError, match=rf"dt_annos\[4\]\['bbox'\] has shape "
                       rf'\({n}, 3\), expected \({n}, 4\)'):
        kitti_eval(gt, broken)
    broken = copy.deepcopy(dt)
    del broken[7]['score']
    with pytest.raises(KeyError, match=r"dt_annos\[7\] lacks \['score'\]"):
        kitti_eval(gt, broken)
    broken = copy.deepcopy(gt)
    broken[2]['rotation_y'] = broken[2]['rotation_y'][:-1]
    with pytest.raises(ValueError, match=r"gt_annos\[2\]\['rotation_y'\]"):
        kitti_eval(broken, dt)
    with pytest.raises(ValueError, match="unknown KITTI class 'Truck'"):
        kitti_eval(gt, dt, ('Car', 'Truck'))
    with pytest.raises(ValueError, match="unknown eval type 'mAP'"):
        kitti_eval(gt, dt, eval_types=('bbox', 'mAP'))


def _shapely_polygons(boxes):
    """BEV boxes (x, z, l, w, ry) as shapely polygons, the official corner
    convention (``rbbox_to_corners``)."""
    polygons = []
    for x, z, length, width, ry in boxes:
        c, s = np.cos(ry), np.sin(ry)
        half_l, half_w = length / 2, width / 2
        polygons.append(shapely.Polygon([
            (c * dx + s * dz + x, -s * dx + c * dz + z)
            for dx, dz in ((-half_l, -half_w), (half_l, -half_w),
                           (half_l, half_w), (-half_l, half_w))]))
    return np.array(polygons)


def _special_pairs():
    """Identical, disjoint, contained, touching (edge and corner) and
    crossing boxes."""
    a = [(0, 0, 4, 2, 0), (0, 0, 4, 2, 0.3), (0, 0, 4, 2, 0), (0, 0, 4, 2, 0),
         (0, 0, 4, 2, 0), (0, 0, 4, 2, 0), (1, 1, 3, 3, np.pi / 4),
         (0, 0, 4, 2, np.pi / 2)]
    b = [(0, 0, 4, 2, 0), (0, 0, 4, 2, 0.3 + np.pi), (10, 0, 4, 2, 1.0),
         (0.5, 0.2, 1, 0.5, 0.4), (4, 0, 4, 2, 0), (4, 2, 4, 2, 0),
         (1, 1, 3, 3, -np.pi / 4), (0, 0, 4, 2, 0)]
    return np.array(a, float), np.array(b, float)


def test_bev_iou_equals_shapely():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([
        rng.uniform(-4, 4, (60, 2)), rng.uniform(0.3, 5, (60, 2)),
        rng.uniform(-np.pi, np.pi, (60, 1))], 1)
    special_a, special_b = _special_pairs()
    boxes_a = np.concatenate([boxes[:30], special_a])
    boxes_b = np.concatenate([boxes[30:], special_b])
    polygons_a, polygons_b = _shapely_polygons(boxes_a), _shapely_polygons(
        boxes_b)
    inter = shapely.area(
        shapely.intersection(polygons_a[:, None], polygons_b[None]))
    union = shapely.area(polygons_a)[:, None] + shapely.area(
        polygons_b)[None] - inter
    np.testing.assert_allclose(bev_box_intersection(boxes_a, boxes_b), inter,
                               atol=1e-9)
    iou = bev_box_iou(boxes_a, boxes_b)
    np.testing.assert_allclose(iou, inter / union, atol=1e-9)
    assert 0.2 < (iou > 0).mean() < 0.8
    # identical, turned by pi, disjoint, contained, touching at an edge and
    # a corner, a square turned by 90 degrees, a cross
    np.testing.assert_allclose(np.diag(iou[30:, 30:]),
                               [1, 1, 0, 0.5 / 8, 0, 0, 1, 4 / 12],
                               atol=1e-12)


def test_box3d_and_box2d_iou():
    # 3D: BEV intersection x height overlap (y is the bottom, boxes go up)
    a = np.array([[0, 1.5, 10, 4, 1.5, 2, 0.2]])
    b = np.array([[0, 1.5, 10, 4, 1.5, 2, 0.2], [0, 0.75, 10, 4, 1.5, 2, 0.2],
                  [0, 0.0, 10, 4, 1.5, 2, 0.2], [0, 1.5, 12, 4, 1.5, 2, 0.2]])
    bev = bev_box_intersection(a[:, [0, 2, 3, 5, 6]], b[:, [0, 2, 3, 5, 6]])
    assert bev[0, 0] == pytest.approx(8)
    np.testing.assert_allclose(
        box3d_iou(a, b)[0],
        [1, 6 / 18, 0, bev[0, 3] * 1.5 / (24 - bev[0, 3] * 1.5)], atol=1e-12)
    # 2D: no +1 on widths, as the devkit
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [10, 0, 20, 10]])
    np.testing.assert_allclose(box2d_iou(boxes[:1], boxes)[0],
                               [1, 25 / 175, 0])
    with pytest.raises(ValueError, match=r'boxes must have shape \(N, 7\)'):
        box3d_iou(a[:, :5], b)
