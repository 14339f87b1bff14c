"""Time vitdense's KITTI evaluator against the official devkit in one run.

The official evaluator (traveller59/kitti-object-eval-python, a checkout
given by ``--official-dir``; nothing of it is in vitdense) is imported with
what it needs on a CPU machine patched in at run time: ``np.bool`` where
numpy lacks it, a stand-in ``skimage`` (``kitti_common`` imports it for
images only) and, in place of its ``numba.cuda`` ``rotate_iou_gpu_eval``,
the same overlaps computed on the CPU by
:func:`vitdense.evaluation.functional.rotated_iou.bev_box_intersection`.

Both evaluate one synthetic KITTI-val-sized set (3769 frames, about 4
objects of Car/Pedestrian/Cyclist per frame plus Van, Person_sitting,
DontCare and other types, and a detector's 20-50 scored boxes per frame),
the numbers are checked to agree, and the times and their ratio are
printed. Numba compiles on first use: each evaluator first runs once on
100 frames, and that warm-up is reported apart.

Example (``/tmp/kitti-official``: a checkout of
traveller59/kitti-object-eval-python, commit 9f385f8 measured)::

    python tools/analysis_tools/benchmark_kitti_eval.py \
        --official-dir /tmp/kitti-official --threads 2
"""
import argparse
import sys
import time
import types
import warnings

import numba
import numpy as np

from vitdense.datasets.synthetic import KITTI_P2
from vitdense.evaluation.functional.kitti_eval import kitti_eval
from vitdense.evaluation.functional.rotated_iou import bev_box_intersection

CLASSES = ('Car', 'Pedestrian', 'Cyclist')
#: type -> (share of the ground truth, mean h, w, l)
TYPES = {'Car': (0.55, (1.53, 1.63, 3.88)),
         'Pedestrian': (0.14, (1.76, 0.66, 0.84)),
         'Cyclist': (0.06, (1.74, 0.60, 1.76)),
         'Van': (0.06, (2.21, 1.90, 5.08)),
         'Person_sitting': (0.01, (1.27, 0.59, 0.80)),
         'Truck': (0.02, (3.25, 2.59, 10.1)),
         'DontCare': (0.16, (1.0, 1.0, 1.0))}
WIDTH, HEIGHT = 1242, 375


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-dir', required=True,
                        help='checkout of traveller59/kitti-object-eval-'
                        'python (eval.py, kitti_common.py)')
    parser.add_argument('--frames', type=int, default=3769,
                        help='frames (KITTI val: 3769)')
    parser.add_argument('--threads', type=int, default=None,
                        help='numba threads (the official 3D overlap '
                        'kernel is parallel)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _objects(rng, count, names, dims, jitter=None):
    """``count`` camera boxes in front of the camera with their projected,
    clipped 2D boxes (or ``jitter`` (location, dims, ry, bbox) of given
    ones)."""
    if jitter is None:
        z = rng.uniform(5, 60, count)
        location = np.stack([rng.uniform(-0.5, 0.5, count) * z,
                             rng.normal(1.65, 0.1, count), z], 1)
        dims = dims * rng.uniform(0.85, 1.15, (count, 3))  # h, w, l
        ry = rng.uniform(-np.pi, np.pi, count)
    else:
        location, dims, ry = jitter
    h, w, l = dims.T
    corner_x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) / 2 * l[:, None]
    corner_y = -np.array([0, 0, 0, 0, 1, 1, 1, 1]) * h[:, None]
    corner_z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) / 2 * w[:, None]
    c, s = np.cos(ry)[:, None], np.sin(ry)[:, None]
    points = np.stack([c * corner_x + s * corner_z + location[:, :1],
                       corner_y + location[:, 1:2],
                       -s * corner_x + c * corner_z + location[:, 2:]], 1)
    pixels = np.einsum('ij,njk->nik', KITTI_P2[:, :3], points) + \
        KITTI_P2[:, 3:][None]
    pixels = pixels[:, :2] / np.maximum(pixels[:, 2:], 0.1)
    bbox = np.concatenate([pixels.min(2), pixels.max(2)], 1)
    bbox = np.clip(bbox, 0, [WIDTH - 1, HEIGHT - 1, WIDTH - 1, HEIGHT - 1])
    bbox[:, 2:] = np.maximum(bbox[:, 2:], bbox[:, :2] + 1)
    alpha = _wrap(ry - np.arctan2(location[:, 0], location[:, 2]))
    return dict(name=names, alpha=alpha, bbox=bbox,
                dimensions=dims[:, [2, 0, 1]], location=location,
                rotation_y=ry)


def _split(columns, counts):
    """Per-frame annotation dicts from concatenated columns."""
    bounds = np.cumsum(counts)[:-1]
    parts = {key: np.split(value, bounds) for key, value in columns.items()}
    return [{key: parts[key][f] for key in columns}
            for f in range(len(counts))]


def make_set(num_frames, seed):
    """A KITTI-val-sized ground truth and a detector's output for it."""
    rng = np.random.default_rng(seed)
    names = np.array(list(TYPES))
    shares = np.array([v[0] for v in TYPES.values()])
    gt_counts = rng.poisson(4.8, num_frames)
    total = gt_counts.sum()
    gt_names = rng.choice(names, total, p=shares / shares.sum())
    mean_dims = np.array([TYPES[n][1] for n in gt_names])
    gt = _objects(rng, total, gt_names, mean_dims)
    gt['truncated'] = np.round(np.where(rng.random(total) < 0.8, 0,
                                        rng.uniform(0, 0.9, total)), 2)
    gt['occluded'] = rng.choice(4, total, p=[0.6, 0.25, 0.12, 0.03])
    gt['score'] = np.zeros(total)
    dontcare = gt_names == 'DontCare'
    gt['dimensions'][dontcare] = -1
    gt['location'][dontcare] = -1000
    gt['rotation_y'][dontcare] = -10
    gt['alpha'][dontcare] = -10
    # detections: 85% of the objects found (jittered, some with the wrong
    # class), plus low-scoring false positives up to 20-50 boxes per frame
    found = (rng.random(total) < 0.85) & ~dontcare
    quality = rng.random(found.sum())
    location = gt['location'][found] + rng.normal(0, 1, (found.sum(), 3)) * \
        np.stack([0.05 + 0.4 * quality, 0.03 + 0.1 * quality,
                  gt['location'][found][:, 2] * 0.02 * (0.3 + quality)], 1)
    dims = gt['dimensions'][found][:, [1, 2, 0]] * \
        rng.normal(1, 0.03 + 0.08 * quality[:, None], (found.sum(), 3))
    ry = _wrap(gt['rotation_y'][found] + rng.normal(0, 0.05 + 0.3 * quality))
    det_names = gt_names[found].copy()
    swap = rng.random(found.sum()) < 0.05
    det_names[swap] = rng.choice(np.array(CLASSES), swap.sum())
    hits = _objects(rng, found.sum(), det_names, None, (location, dims, ry))
    hits['score'] = np.clip(0.95 - 0.6 * quality +
                            rng.normal(0, 0.1, found.sum()), 0.01, 0.999)
    hit_frames = np.repeat(np.arange(num_frames), gt_counts)[found]
    dt_counts = rng.integers(20, 51, num_frames)
    fp_counts = np.maximum(dt_counts - np.bincount(hit_frames,
                                                   minlength=num_frames), 0)
    fp_names = rng.choice(np.array(CLASSES + ('Van', )), fp_counts.sum(),
                          p=[0.6, 0.2, 0.1, 0.1])
    fps = _objects(rng, fp_counts.sum(), fp_names,
                   np.array([TYPES[n][1] for n in fp_names]))
    fps['score'] = rng.beta(1, 6, fp_counts.sum())
    fp_frames = np.repeat(np.arange(num_frames), fp_counts)
    order = np.argsort(np.concatenate([hit_frames, fp_frames]), kind='stable')
    dt = {key: np.concatenate([hits[key], fps[key]])[order] for key in hits}
    dt['truncated'] = np.full(len(order), -1.0)
    dt['occluded'] = np.full(len(order), -1)
    dt_counts = np.bincount(np.concatenate([hit_frames, fp_frames]),
                            minlength=num_frames)
    # the label files' precision
    for columns in (gt, dt):
        for key in ('alpha', 'bbox', 'dimensions', 'location', 'rotation_y'):
            columns[key] = np.round(columns[key], 2)
    dt['score'] = np.round(dt['score'], 4)
    return _split(gt, gt_counts), _split(dt, dt_counts)


def load_official(folder):
    """The official ``eval`` module, patched to run on a CPU."""
    if not hasattr(np, 'bool'):
        np.bool = bool  # removed in numpy 1.24-1.26, back in 2.0

    def rotate_iou_cpu(boxes, query_boxes, criterion=-1, device_id=0):
        inter = bev_box_intersection(boxes, query_boxes)
        if criterion == -1:
            area = boxes[:, 2] * boxes[:, 3]
            query_area = query_boxes[:, 2] * query_boxes[:, 3]
            return inter / (area[:, None] + query_area[None] - inter)
        if criterion != 2:
            raise NotImplementedError(f'criterion {criterion}')
        return inter

    for name in ('second', 'second.core', 'second.core.non_max_suppression',
                 'second.core.non_max_suppression.nms_gpu', 'skimage',
                 'skimage.io'):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules['second.core.non_max_suppression.nms_gpu'] \
        .rotate_iou_gpu_eval = rotate_iou_cpu
    sys.path.insert(0, folder)
    import eval as official  # noqa: E402
    official.rotate_iou_gpu_eval = rotate_iou_cpu
    return official


def official_eval(official, gt_annos, dt_annos):
    """``get_official_eval_result`` and its APs as vitdense's flat keys
    (R40 from its precision as ``get_mAP_R40`` of the later copies)."""
    captured = {}
    do_eval = official.do_eval_v3

    def capture(*args, **kwargs):
        captured['metrics'] = do_eval(*args, **kwargs)
        return captured['metrics']

    official.do_eval_v3 = capture
    try:
        official.get_official_eval_result(gt_annos, dt_annos, list(CLASSES))
    finally:
        official.do_eval_v3 = do_eval
    metrics = captured['metrics']
    results = {}
    for j, name in enumerate(CLASSES):
        for i, suffix in enumerate(('', '_loose')):
            for key, metric, field in (('2D', 'bbox', 'precision'),
                                       ('BEV', 'bev', 'precision'),
                                       ('3D', '3d', 'precision'),
                                       ('AOS', 'bbox', 'orientation')):
                precision = metrics[metric][field][j, :, i]
                r11 = official.get_mAP_v2(precision)
                r40 = precision[..., 1:].sum(-1) / 40 * 100
                for d, level in enumerate(('easy', 'moderate', 'hard')):
                    results[f'{name}_{key}_{level}_R11{suffix}'] = r11[d]
                    results[f'{name}_{key}_{level}_R40{suffix}'] = r40[d]
    return results


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main():
    args = parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    # the official kernels' notes on parfors and reflected lists
    warnings.simplefilter('ignore', numba.NumbaWarning)
    official = load_official(args.official_dir)
    start = time.perf_counter()
    gt_annos, dt_annos = make_set(args.frames, args.seed)
    num_gt = sum(len(a['name']) for a in gt_annos)
    num_dt = sum(len(a['name']) for a in dt_annos)
    print(f'{args.frames} frames, {num_gt} ground-truth objects '
          f'({num_gt / args.frames:.1f} per frame, DontCare included), '
          f'{num_dt} detections ({num_dt / args.frames:.1f} per frame); '
          f'made in {time.perf_counter() - start:.1f} s')
    if args.frames < 50:
        raise SystemExit('--frames must be >= 50: the official evaluator '
                         'splits the frames into 50 parts and fails on '
                         'empty ones')
    warm = min(100, args.frames)
    _, official_warm = timed(official_eval, official, gt_annos[:warm],
                             dt_annos[:warm])
    _, vitdense_warm = timed(kitti_eval, gt_annos[:warm], dt_annos[:warm])
    expected, official_s = timed(official_eval, official, gt_annos, dt_annos)
    (table, results), vitdense_s = timed(kitti_eval, gt_annos, dt_annos)
    print(table)
    diff = max(abs(results[key] - value) for key, value in expected.items())
    if set(expected) != set(results):
        raise SystemExit('the evaluators return different keys: '
                         f'{sorted(set(expected) ^ set(results))}')
    print(f'{len(expected)} APs, max abs difference {diff:.2e}')
    print(f'warm-up on {warm} frames (numba compile or cache load): '
          f'official {official_warm:.2f} s, vitdense {vitdense_warm:.2f} s')
    print('| evaluator | time (s) |')
    print('|---|---:|')
    print(f'| official, rotated IoU on the CPU | {official_s:.2f} |')
    print(f'| vitdense | {vitdense_s:.2f} |')
    print(f'speed-up: {official_s / vitdense_s:.1f}x')
    if diff > 1e-4:
        raise SystemExit(f'APs differ by {diff:.2e} (> 1e-4)')


if __name__ == '__main__':
    main()
