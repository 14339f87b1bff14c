"""KittiMetric: predictions -> kitti_common annos -> devkit AP; submission
files that evaluate back to the same numbers."""
import math
import os.path as osp
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmdet.structures import DetDataSample
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from vitdense.datasets.kitti_mono import parse_kitti_calib
from vitdense.datasets.synthetic import KITTI_P2, make_kitti_shapes
from vitdense.evaluation.functional import kitti_eval, read_kitti_label_dir
from vitdense.evaluation.metrics import KittiMetric
from vitdense.evaluation.metrics.kitti_metric import prediction_to_kitti_anno
from vitdense.registry import METRICS
from vitdense.structures import box3d_corners

CLASSES = ('Pedestrian', 'Cyclist', 'Car')
EVAL_CLASSES = ('Car', 'Pedestrian', 'Cyclist')
SHAPE = (375, 1242)
DIMS = {'Car': (3.9, 1.55, 1.65), 'Pedestrian': (0.85, 1.75, 0.65),
        'Cyclist': (1.75, 1.75, 0.6)}  # l, h, w


def _alpha(P, box):
    """MonoDETR's ry2alpha at the projected 3D box centre, written out."""
    centre = np.array([box[0], box[1] - box[4] / 2, box[2], 1.0])
    u = (P[0] @ centre) / (P[2] @ centre)
    alpha = box[6] - math.atan2(u - P[0, 2], P[0, 0])
    return (alpha + math.pi) % (2 * math.pi) - math.pi


def _corners(box):
    """(8, 3) corners (KITTI devkit box, tests/test_structures)."""
    return box3d_corners(box)[0]


def _box2d(P, box):
    pixels = np.c_[_corners(box), np.ones(8)] @ P.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    x1, y1 = pixels.min(0)
    x2, y2 = pixels.max(0)
    return [max(x1, 0), max(y1, 0), min(x2, SHAPE[1]), min(y2, SHAPE[0])]


def _frame(P, boxes, names, dontcare=()):
    """Ground truth as kitti_common anno: fully visible objects (easy, so
    in every difficulty) plus DontCare regions."""
    num = len(boxes)
    return {
        'name': np.array(list(names) + ['DontCare'] * len(dontcare),
                         dtype='<U10'),
        'truncated': np.r_[np.zeros(num), -np.ones(len(dontcare))],
        'occluded': np.r_[np.zeros(num), -np.ones(len(dontcare))].astype(
            np.int64),
        'alpha': np.r_[[_alpha(P, b) for b in boxes],
                       -10 * np.ones(len(dontcare))],
        'bbox': np.array([_box2d(P, b) for b in boxes] +
                         [list(d) for d in dontcare]).reshape(-1, 4),
        'dimensions': np.array([b[3:6] for b in boxes] +
                               [[-1, -1, -1]] * len(dontcare)).reshape(-1, 3),
        'location': np.array([b[:3] for b in boxes] +
                             [[-1000] * 3] * len(dontcare)).reshape(-1, 3),
        'rotation_y': np.r_[[b[6] for b in boxes],
                            -10 * np.ones(len(dontcare))],
        'score': np.zeros(num + len(dontcare))}


def _scene(num_frames=15):
    """Frames with three objects of each class (45 per class: the devkit's
    41 recall points need more than 40 ground truths for a perfect AP of
    100), DontCare in every third frame and a last, empty frame."""
    P = KITTI_P2.copy()
    frames = []
    for index in range(num_frames):
        boxes, names = [], []
        for k, name in enumerate(EVAL_CLASSES):
            l, h, w = DIMS[name]
            for slot in range(3):
                boxes.append([(slot - 1) * 5.0 + (k - 1) * 1.5,
                              1.65, 10.0 + 4 * k + 0.3 * index, l, h, w,
                              0.4 * k - 1.2 + 0.2 * index + slot])
                names.append(name)
        dontcare = [(5, 170, 60, 200)] if index % 3 == 1 else ()
        frames.append((boxes, names, _frame(P, boxes, names, dontcare)))
    frames.append(([], [], _frame(P, [], [])))
    return P, frames


def _scores(index, num, top=0.9):
    """Distinct scores: the devkit's score thresholds assume no ties (tied
    true positives share one threshold, so AP drops)."""
    return top - 0.001 * (10 * index + np.arange(num))


def _sample(P, index, gt, boxes, names, scores=None, with_2d=False):
    sample = DetDataSample(metainfo=dict(
        sample_id=f'{index:06d}', ori_shape=SHAPE, ori_cam2img=P,
        img_path=f'image_2/{index:06d}.png'))
    num = len(boxes)
    pred = InstanceData()
    pred.bboxes_3d = torch.tensor(np.asarray(boxes, float).reshape(-1, 7),
                                  dtype=torch.float32)
    pred.scores_3d = torch.tensor(_scores(index, num) if scores is None
                                  else scores, dtype=torch.float32)
    pred.labels_3d = torch.tensor([CLASSES.index(n) for n in names],
                                  dtype=torch.int64)
    if with_2d:
        pred.bboxes = torch.tensor(
            np.array([_box2d(P, b) for b in boxes]).reshape(-1, 4))
        pred.alpha = torch.tensor([_alpha(P, b) for b in boxes])
    sample.pred_instances_3d = pred
    sample.eval_ann_info = gt
    return sample


def _evaluate(samples, size=None, **kwargs):
    evaluator = Evaluator(KittiMetric(**kwargs))
    evaluator.dataset_meta = dict(classes=CLASSES)
    evaluator.process(data_samples=samples)
    return evaluator.evaluate(size or len(samples))


def _expected_keys():
    return {f'kitti/{c}_{t}_{d}_{r}{s}' for c in EVAL_CLASSES
            for t in ('2D', 'AOS', 'BEV', '3D')
            for d in ('easy', 'moderate', 'hard') for r in ('R11', 'R40')
            for s in ('', '_loose')}


def test_kitti_metric_is_registered():
    metric = METRICS.build(dict(type='KittiMetric', classes=EVAL_CLASSES))
    assert isinstance(metric, KittiMetric)
    assert metric.prefix == 'kitti'


@pytest.mark.parametrize('with_2d', [False, True])
def test_perfect_predictions_score_100_everywhere(with_2d):
    P, frames = _scene()
    samples = [_sample(P, i, gt, boxes, names, with_2d=with_2d)
               for i, (boxes, names, gt) in enumerate(frames)]
    metrics = _evaluate(samples)
    assert set(metrics) == _expected_keys()
    for key, value in metrics.items():
        assert value == pytest.approx(100, abs=1e-4), key


def test_empty_predictions_score_0():
    P, frames = _scene()
    samples = [_sample(P, i, gt, [], [])
               for i, (_, _, gt) in enumerate(frames)]
    metrics = _evaluate(samples)
    # no detection has an alpha: the devkit prints no AOS
    assert set(metrics) == {k for k in _expected_keys() if '_AOS_' not in k}
    assert all(value == 0 for value in metrics.values()), metrics


def test_metric_equals_kitti_eval_of_its_annos():
    """The cars of even frames are missed and the top-scored box of each
    frame is a false pedestrian: the metric returns exactly kitti_eval's
    numbers on the converted annos."""
    P, frames = _scene()
    samples, gts, preds = [], [], []
    for i, (boxes, names, gt) in enumerate(frames):
        keep = [j for j, n in enumerate(names) if n != 'Car' or i % 2]
        boxes = [[0, 1.65, 30, 1, 1.7, 0.6, 0]] + [boxes[j] for j in keep]
        names = ['Pedestrian'] + [names[j] for j in keep]
        samples.append(_sample(P, i, gt, boxes, names))
        gts.append(gt)
        preds.append(prediction_to_kitti_anno(
            samples[-1].pred_instances_3d.to_dict(), CLASSES, P, SHAPE))
    metrics = _evaluate(samples)
    _, expected = kitti_eval(gts, preds, classes=CLASSES)
    assert metrics == {f'kitti/{k}': v for k, v in expected.items()}
    # recall 21/45 = 0.467 at precision 1; get_thresholds rounds it to the
    # nearest of its recall steps, 19/40.
    assert metrics['kitti/Car_3D_moderate_R40'] == pytest.approx(47.5)
    assert metrics['kitti/Cyclist_3D_moderate_R40'] == pytest.approx(100)
    assert metrics['kitti/Pedestrian_3D_moderate_R40'] < 100


def test_pred_score_thr_drops_low_scores():
    P, frames = _scene()
    fp = [0.5, 1.65, 12, 3.9, 1.55, 1.65, 0.3]  # a false Car

    def samples(true_top, false_top):
        return [_sample(P, i, gt, boxes + [fp], names + ['Car'],
                        scores=np.r_[_scores(i, len(boxes), true_top),
                                     false_top - i / 1000])
                for i, (boxes, names, gt) in enumerate(frames)]

    false_first = samples(0.5, 0.95)
    assert _evaluate(false_first)['kitti/Car_3D_moderate_R40'] < 100
    assert _evaluate(false_first, pred_score_thr=0.6)[
        'kitti/Car_3D_moderate_R40'] == 0
    true_first = samples(0.95, 0.5)
    assert _evaluate(true_first, pred_score_thr=0.6)[
        'kitti/Car_3D_moderate_R40'] == pytest.approx(100)


def test_derived_2d_box_is_clipped_projection_and_alpha_is_ry2alpha():
    P = KITTI_P2.copy()
    # Crosses the right image border: the 2D box is clipped to W.
    box = [8.0, 1.65, 10.0, 3.9, 1.55, 1.65, 0.3]
    anno = prediction_to_kitti_anno(
        dict(bboxes_3d=np.array([box]), scores_3d=np.array([0.7]),
             labels_3d=np.array([2])), CLASSES, P, SHAPE)
    pixels = np.c_[_corners(box), np.ones(8)] @ P.T
    u, v = pixels[:, 0] / pixels[:, 2], pixels[:, 1] / pixels[:, 2]
    assert u.max() > SHAPE[1]
    np.testing.assert_allclose(anno['bbox'][0],
                               [u.min(), max(v.min(), 0), SHAPE[1],
                                min(v.max(), SHAPE[0])], rtol=0, atol=5e-5)
    # 4 decimals, as written to the submission
    assert anno['alpha'][0] == pytest.approx(_alpha(P, box), abs=5e-5)
    assert anno['name'].tolist() == ['Car']
    np.testing.assert_allclose(anno['dimensions'][0], box[3:6])
    np.testing.assert_allclose(anno['location'][0], box[:3])
    assert anno['truncated'][0] == -1 and anno['occluded'][0] == -1


def _jittered_predictions(root, ids, rng):
    """The embedded generator's ground truth, jittered, with false
    positives, misses and an empty frame."""
    gts = read_kitti_label_dir(osp.join(root, 'label_2'), ids)
    samples = []
    for index, (sample_id, gt) in enumerate(zip(ids, gts)):
        P = parse_kitti_calib(osp.join(root, 'calib', sample_id + '.txt'))[
            'P2']
        boxes = np.c_[gt['location'], gt['dimensions'], gt['rotation_y']]
        names = gt['name'].tolist()
        keep = rng.random(len(boxes)) > 0.2
        boxes, names = boxes[keep], [n for n, k in zip(names, keep) if k]
        boxes[:, :3] += rng.normal(0, 0.25, (len(boxes), 3))
        boxes[:, 3:6] *= rng.uniform(0.9, 1.1, (len(boxes), 3))
        boxes[:, 6] += rng.normal(0, 0.2, len(boxes))
        false = np.c_[rng.uniform(-8, 8, 2), [1.65, 1.65],
                      rng.uniform(8, 30, 2), np.tile(DIMS['Car'], (2, 1)),
                      rng.uniform(-3, 3, 2)]
        boxes = np.r_[boxes, false]
        names = names + ['Car', 'Pedestrian']
        if index == 0:
            boxes, names = boxes[:0], []
        sample = _sample(P, 0, gt, boxes, names,
                         scores=rng.uniform(0.1, 1, len(boxes)))
        sample.set_metainfo(dict(sample_id=sample_id))
        samples.append(sample)
    return gts, samples


def test_submission_files_evaluate_to_the_metric_numbers(tmp_path):
    root = make_kitti_shapes(str(tmp_path / 'kitti'), num_train=1,
                             num_val=12, scale=1.0, seed=3)
    with open(osp.join(root, 'ImageSets', 'val.txt')) as f:
        ids = f.read().split()
    gts, samples = _jittered_predictions(root, ids,
                                         np.random.default_rng(0))
    out = str(tmp_path / 'eval_and_write')
    metrics = _evaluate(samples, outfile_prefix=out)
    assert 0 < metrics['kitti/Car_3D_moderate_R40_loose'] < 100

    submission = str(tmp_path / 'submission')
    assert _evaluate(samples, format_only=True,
                     outfile_prefix=submission) == {}
    for sample_id in ids:
        with open(osp.join(submission, sample_id + '.txt')) as f:
            written = f.read()
        with open(osp.join(out, sample_id + '.txt')) as f:
            assert f.read() == written
        assert all(len(line.split()) == 16
                   for line in written.splitlines())
    assert open(osp.join(submission, ids[0] + '.txt')).read() == ''

    preds = read_kitti_label_dir(submission, ids)
    _, results = kitti_eval(gts, preds, classes=CLASSES)
    assert {f'kitti/{k}': v for k, v in results.items()} == metrics


def test_format_only_needs_outfile_prefix():
    with pytest.raises(ValueError, match='outfile_prefix'):
        KittiMetric(format_only=True)


def test_format_only_does_not_need_ground_truth(tmp_path):
    P, frames = _scene()
    boxes, names, _ = frames[0]
    sample = _sample(P, 42, None, boxes, names)
    out = str(tmp_path / 'test_split')
    assert _evaluate([sample], format_only=True, outfile_prefix=out) == {}
    anno = read_kitti_label_dir(out, ['000042'])[0]
    assert anno['name'].tolist() == list(names)
    np.testing.assert_allclose(anno['score'], _scores(42, 9), atol=1e-4)
    np.testing.assert_allclose(anno['location'], np.array(boxes)[:, :3],
                               atol=1e-4)


def test_missing_ground_truth_is_a_clear_error():
    P, frames = _scene()
    boxes, names, _ = frames[0]
    with pytest.raises(KeyError, match='000000 has no `eval_ann_info`'):
        _evaluate([_sample(P, 0, None, boxes, names)])


def test_unknown_metric_and_labels_are_refused():
    with pytest.raises(ValueError, match='must be one or more of'):
        KittiMetric(metric='mAP')
    with pytest.raises(ValueError, match=r'labels_3d \[5\] outside'):
        prediction_to_kitti_anno(
            dict(bboxes_3d=np.ones((1, 7)), scores_3d=np.ones(1),
                 labels_3d=np.array([5])), CLASSES, KITTI_P2, SHAPE)


def test_metric_selects_eval_types():
    P, frames = _scene()
    samples = [_sample(P, i, gt, boxes, names)
               for i, (boxes, names, gt) in enumerate(frames)]
    metrics = _evaluate(samples, metric='3d')
    assert metrics and all('_3D_' in key for key in metrics)


def _dist_worker(rank, port, samples, out):
    torch.distributed.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=2)
    # mmengine's DefaultSampler gives rank r the samples r, r + 2, ...
    out[rank] = _evaluate(samples[rank::2], size=len(samples))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters
def test_two_process_evaluation_equals_single_process():
    P, frames = _scene()
    samples = []
    for i, (boxes, names, gt) in enumerate(frames):
        keep = slice(0, 2 if i % 2 else 3)
        samples.append(_sample(P, i, gt, boxes[keep], names[keep]))
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_dist_worker, args=(port, samples, out), nprocs=2)
    single = _evaluate(samples)
    assert out[0] == single and out[1] == single
