"""KITTI object detection AP (2D, AOS, BEV, 3D; R11 and R40) on the CPU.

The numbers are those of the evaluator every KITTI code base vendors,
traveller59/kitti-object-eval-python (``eval.get_official_eval_result``,
commit 9f385f8; copied into mmdet3d, OpenPCDet, MonoDETR and MonoDINO-DETR),
with R40 as those copies add it (``get_mAP_R40``). vitdense has its own
because the official one needs ``numba.cuda`` (a GPU and libNVVM) for its
rotated IoU, its ``kitti_common`` uses ``np.bool`` (gone in numpy 1.24-1.26,
back in 2.0), it fails on fewer than 50 frames (empty parts), and its
per-frame Python loops take minutes on the 3769-frame val split. Here the
overlaps (:mod:`.rotated_iou`) and the matching are numba CPU kernels run
once over all frames. Objects that cannot count for a class are dropped
before matching (the devkit skips them), detections no ground truth can
take are counted once as false positives, and a frame is re-matched only
when its set of contested detections above the score threshold changes.

Devkit behaviour kept, as in ``eval.py``:

- difficulty (``clean_data``): a ground truth counts for easy / moderate /
  hard when its 2D box is taller than 40 / 25 / 25 px, occlusion <= 0 / 1 / 2
  and truncation <= 0.15 / 0.3 / 0.5; others of the class are ignored (a
  detection on them is neither TP nor FP). Van is ignored for Car and
  Person_sitting for Pedestrian. Detections lower than the height limit are
  ignored whatever their class; other detections of other classes do not
  take part.
- DontCare regions (2D metric only): an unmatched detection whose box lies
  more than the overlap threshold inside one (intersection / its own area)
  is not a false positive.
- matching (``compute_statistics_jit``): ground truths in file order each
  take the free detection of highest overlap above the threshold (an
  ignored detection only when no other qualifies); the 41 score thresholds
  come from the true positives' scores at recall steps of 1/40
  (``get_thresholds``); precision is made monotone from the right; AOS sums
  ``(1 + cos(alpha_gt - alpha_dt)) / 2`` over true positives, and is
  computed only when the first non-empty detection frame has a real alpha
  (not -10).
- AP R11: mean precision at recall 0, 0.1, ..., 1 (every 4th of the 41
  points); AP R40: mean at recall 1/40, ..., 1 (points 1..40), in percent.
  The points are score thresholds at about those recalls: a class with
  fewer than 40 found objects leaves the last points at 0.
"""
import math
from typing import Dict, List, Sequence, Tuple

import numba
import numpy as np

from .rotated_iou import BEV, BOX2D, BOX2D_OVER_FIRST, BOX3D, segment_overlaps

__all__ = ['kitti_eval', 'KITTI_MIN_OVERLAPS']

#: Overlap thresholds of ``get_official_eval_result`` per class: the strict
#: set, then the loose one, each as (2D, BEV, 3D).
KITTI_MIN_OVERLAPS = {
    'Car': ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5)),
    'Pedestrian': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
    'Cyclist': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
    'Van': ((0.7, 0.7, 0.7), (0.7, 0.5, 0.5)),
    'Person_sitting': ((0.5, 0.5, 0.5), (0.5, 0.25, 0.25)),
}
#: Ground-truth classes ignored (not missed, not false) for a class.
NEIGHBOUR_CLASSES = {'car': 'van', 'pedestrian': 'person_sitting'}
DIFFICULTIES = ('easy', 'moderate', 'hard')
MIN_HEIGHT = (40, 25, 25)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
NUM_SAMPLE_POINTS = 41
EVAL_TYPES = ('bbox', 'aos', 'bev', '3d')
#: eval type -> (overlap kind, column of the overlap set, key name)
_METRICS = {'bbox': (BOX2D, 0, '2D'), 'bev': (BEV, 1, 'BEV'),
            '3d': (BOX3D, 2, '3D')}

GT_KEYS = {'name': (), 'truncated': (), 'occluded': (), 'alpha': (),
           'bbox': (4,), 'dimensions': (3,), 'location': (3,),
           'rotation_y': ()}
DT_KEYS = {'name': (), 'alpha': (), 'bbox': (4,), 'dimensions': (3,),
           'location': (3,), 'rotation_y': (), 'score': ()}


class _Frames:
    """The annotation dicts of all frames, concatenated (``starts`` (F+1,)
    delimits frame f)."""

    def __init__(self, annos: Sequence[dict], keys: Dict[str, tuple],
                 what: str) -> None:
        if not isinstance(annos, (list, tuple)):
            raise TypeError(f'{what} must be a list of annotation dicts (one '
                            f'per frame), got {type(annos).__name__}')
        counts = []
        columns = {key: [] for key in keys}
        for index, anno in enumerate(annos):
            if not isinstance(anno, dict):
                raise TypeError(f'{what}[{index}] must be a dict, got '
                                f'{type(anno).__name__}')
            missing = [key for key in keys if key not in anno]
            if missing:
                raise KeyError(
                    f'{what}[{index}] lacks {missing}; an annotation of the '
                    f'official kitti_common format has {sorted(keys)}')
            num = len(anno['name'])
            for key, tail in keys.items():
                value = anno[key]
                shape = np.shape(value)
                if shape != (num, ) + tail:
                    if num or np.size(value):
                        raise ValueError(
                            f"{what}[{index}]['{key}'] has shape {shape}, "
                            f'expected {(num, ) + tail} ({num} objects in '
                            "'name')")
                    value = np.zeros((0, ) + tail)
                if num:
                    columns[key].append(value)
            counts.append(num)
        self.starts = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=self.starts[1:])
        for key, tail in keys.items():
            if key == 'name':
                self.name = (np.concatenate(columns[key]).astype(str)
                             if columns[key] else np.zeros(0, str))
            else:
                self.__dict__[key] = (
                    np.concatenate(columns[key]).astype(np.float64)
                    if columns[key] else np.zeros((0, ) + tail))
        names, index = np.unique(self.name, return_inverse=True)
        self.lower_name = np.char.lower(names)[index.reshape(-1)]
        self.height = self.bbox[:, 3] - self.bbox[:, 1]
        self.box3d = np.concatenate(
            [self.location, self.dimensions, self.rotation_y[:, None]], 1)

    def bev(self) -> np.ndarray:
        """(N, 5) BEV boxes x, z, l, w, ry."""
        return self.box3d[:, [0, 2, 3, 5, 6]]


@numba.njit(cache=True)
def _split_frame(overlaps, base, gt_start, gt_stop, dt_start, dt_stop,
                 ignored_gt, ignored_dt, min_overlap, dc_overlaps, dc_base,
                 num_dc, gts, dts, in_dontcare):
    """The objects of one frame that take part for a class (flag != -1).

    Ground truths go to ``gts``; detections overlapping one of them by more
    than ``min_overlap`` (the only ones a ground truth can take) go to
    ``dts``, with ``in_dontcare`` telling whether they lie inside a DontCare
    region; the others are returned as a count: how many are false
    positives (not ignored, not in DontCare), their scores are written to
    the end of ``dts`` in reverse. Returns (num_gts, num_dts, num_lonely).
    """
    num_gt = gt_stop - gt_start
    num_gts = 0
    for g in range(gt_start, gt_stop):
        if ignored_gt[g] != -1:
            gts[num_gts] = g
            num_gts += 1
    num_dts = 0
    num_lonely = 0
    for d in range(dt_start, dt_stop):
        if ignored_dt[d] == -1:
            continue
        row = base + (d - dt_start) * num_gt - gt_start
        contested = False
        for a in range(num_gts):
            if overlaps[row + gts[a]] > min_overlap:
                contested = True
                break
        inside = False
        for c in range(num_dc):
            if dc_overlaps[dc_base + (d - dt_start) * num_dc + c] > \
                    min_overlap:
                inside = True
                break
        if contested:
            dts[num_dts] = d
            in_dontcare[num_dts] = inside
            num_dts += 1
        elif ignored_dt[d] == 0 and not inside:
            num_lonely += 1
            dts[dts.shape[0] - num_lonely] = d
    return num_gts, num_dts, num_lonely


@numba.njit(cache=True)
def _match_frame(overlaps, row_base, num_gt, gts, num_gts, dts, num_dts,
                 in_dontcare, ignored_gt, ignored_dt, score, min_overlap,
                 thresh, compute_fp, assigned, tp_scores, num_tp, gt_alpha,
                 dt_alpha, compute_aos):
    """One frame of ``compute_statistics_jit``: greedy matching of the
    frame's ground truths ``gts`` (file order) with its contested
    detections ``dts`` (see :func:`_split_frame`).

    Without ``compute_fp`` (threshold collection) a ground truth takes the
    best-scoring detection above ``min_overlap`` and the true positives'
    scores are appended to ``tp_scores``; with it, detections below
    ``thresh`` are out and a ground truth takes the best-overlapping
    non-ignored detection (else the first ignored one). A detection taken
    by an ignored ground truth, or ignored itself, is neither TP nor FP; an
    unmatched one inside DontCare is no FP. Returns (tp, fp, fn, sum of
    the TPs' orientation similarity (1 + cos(delta alpha)) / 2, num_tp);
    ``row_base + d * num_gt + g`` indexes ``overlaps`` for global indices.
    """
    for b in range(num_dts):
        assigned[b] = False
    tp = 0
    fp = 0
    fn = 0
    similarity = 0.0
    for a in range(num_gts):
        g = gts[a]
        best = -1
        best_score = -10000000.0
        best_overlap = 0.0
        best_ignored = False
        for b in range(num_dts):
            d = dts[b]
            if assigned[b] or (compute_fp and score[d] < thresh):
                continue
            overlap = overlaps[row_base + d * num_gt + g]
            if overlap <= min_overlap:
                continue
            if not compute_fp:
                if score[d] > best_score:
                    best = b
                    best_score = score[d]
            elif ignored_dt[d] == 0 and (overlap > best_overlap
                                         or best_ignored):
                best = b
                best_overlap = overlap
                best_ignored = False
            elif best < 0 and ignored_dt[d] == 1:
                best = b
                best_ignored = True
        if best < 0:
            if ignored_gt[g] == 0:
                fn += 1
        elif ignored_gt[g] == 1 or ignored_dt[dts[best]] == 1:
            assigned[best] = True
        else:
            tp += 1
            assigned[best] = True
            if not compute_fp:
                tp_scores[num_tp] = score[dts[best]]
                num_tp += 1
            if compute_aos:
                similarity += (1.0 + math.cos(
                    gt_alpha[g] - dt_alpha[dts[best]])) / 2.0
    if compute_fp:
        for b in range(num_dts):
            d = dts[b]
            if not (assigned[b] or in_dontcare[b] or ignored_dt[d] != 0
                    or score[d] < thresh):
                fp += 1
    return tp, fp, fn, similarity, num_tp


@numba.njit(cache=True)
def _precision_counts(overlaps, ov_starts, gt_starts, dt_starts, ignored_gt,
                      ignored_dt, score, gt_alpha, dt_alpha, dc_overlaps,
                      dc_ov_starts, dc_starts, use_dontcare, min_overlap,
                      compute_aos):
    """TP, FP, FN and AOS similarity sums at each of the devkit's score
    thresholds (``eval_class`` for one class, difficulty and overlap).

    Detections no ground truth can take are false positives at every
    threshold up to their score (or nothing, when ignored or in DontCare):
    they are counted once, over all frames. A frame is re-matched only when
    its set of contested detections above the threshold changes. The
    devkit's similarity of -1 (no TP, no FP: skipped) adds the same 0.

    Returns (thresholds, counts (T, 4)).
    """
    num_frames = gt_starts.shape[0] - 1
    max_gt = 1
    max_dt = 1
    for f in range(num_frames):
        max_gt = max(max_gt, gt_starts[f + 1] - gt_starts[f])
        max_dt = max(max_dt, dt_starts[f + 1] - dt_starts[f])
    gts = np.empty(max_gt, np.int64)
    dts = np.empty(max_dt, np.int64)
    in_dontcare = np.empty(max_dt, np.bool_)
    assigned = np.empty(max_dt, np.bool_)
    tp_scores = np.empty(gt_starts[-1])
    num_tp = 0
    num_valid_gt = 0
    for i in range(gt_starts[-1]):
        if ignored_gt[i] == 0:
            num_valid_gt += 1
    # 1. scores of the true positives without a score threshold
    for f in range(num_frames):
        num_dc = dc_starts[f + 1] - dc_starts[f] if use_dontcare else 0
        num_gts, num_dts, _ = _split_frame(
            overlaps, ov_starts[f], gt_starts[f], gt_starts[f + 1],
            dt_starts[f], dt_starts[f + 1], ignored_gt, ignored_dt,
            min_overlap, dc_overlaps, dc_ov_starts[f], num_dc, gts, dts,
            in_dontcare)
        if num_dts > 0:
            num_gt = gt_starts[f + 1] - gt_starts[f]
            num_tp = _match_frame(
                overlaps, ov_starts[f] - dt_starts[f] * num_gt - gt_starts[f],
                num_gt, gts, num_gts, dts, num_dts, in_dontcare, ignored_gt,
                ignored_dt, score, min_overlap, 0.0, False, assigned,
                tp_scores, num_tp, gt_alpha, dt_alpha, False)[4]
    # 2. thresholds at recall steps of 1 / 40 (get_thresholds)
    ranked = np.sort(tp_scores[:num_tp])[::-1]
    thresholds = np.empty(num_tp)
    num_thresholds = 0
    current_recall = 0.0
    for i in range(num_tp):
        left_recall = (i + 1) / num_valid_gt
        if i < num_tp - 1:
            right_recall = (i + 2) / num_valid_gt
        else:
            right_recall = left_recall
        if (right_recall - current_recall < current_recall - left_recall
                and i < num_tp - 1):
            continue
        thresholds[num_thresholds] = ranked[i]
        num_thresholds += 1
        current_recall += 1 / (NUM_SAMPLE_POINTS - 1.0)
    thresholds = thresholds[:num_thresholds]
    # 3. statistics at every threshold
    counts = np.zeros((num_thresholds, 4))
    # lonely false positives start at the first threshold <= their score
    lonely_starts = np.zeros(num_thresholds + 1)
    for f in range(num_frames):
        num_dc = dc_starts[f + 1] - dc_starts[f] if use_dontcare else 0
        num_gts, num_dts, num_lonely = _split_frame(
            overlaps, ov_starts[f], gt_starts[f], gt_starts[f + 1],
            dt_starts[f], dt_starts[f + 1], ignored_gt, ignored_dt,
            min_overlap, dc_overlaps, dc_ov_starts[f], num_dc, gts, dts,
            in_dontcare)
        for k in range(num_lonely):
            lonely_score = score[dts[max_dt - 1 - k]]
            low, high = 0, num_thresholds
            while low < high:
                middle = (low + high) // 2
                if thresholds[middle] <= lonely_score:
                    high = middle
                else:
                    low = middle + 1
            lonely_starts[low] += 1
        if num_gts == 0 and num_dts == 0:
            continue
        num_gt = gt_starts[f + 1] - gt_starts[f]
        row_base = ov_starts[f] - dt_starts[f] * num_gt - gt_starts[f]
        previous = -1
        tp, fp, fn, similarity = 0, 0, 0, 0.0
        for t in range(num_thresholds):
            active = 0
            for b in range(num_dts):
                if score[dts[b]] >= thresholds[t]:
                    active += 1
            if active != previous:
                previous = active
                tp, fp, fn, similarity, _ = _match_frame(
                    overlaps, row_base, num_gt, gts, num_gts, dts, num_dts,
                    in_dontcare, ignored_gt, ignored_dt, score, min_overlap,
                    thresholds[t], True, assigned, tp_scores, 0, gt_alpha,
                    dt_alpha, compute_aos)
            counts[t, 0] += tp
            counts[t, 1] += fp
            counts[t, 2] += fn
            counts[t, 3] += similarity
    counts[:, 1] += np.cumsum(lonely_starts)[:num_thresholds]
    return thresholds, counts


def _ignore_flags(gt: _Frames, dt: _Frames, name: str,
                  difficulty: int) -> Tuple[np.ndarray, np.ndarray]:
    """``clean_data``: 0 counts, 1 ignored, -1 not taking part."""
    name = name.lower()
    same = gt.lower_name == name
    neighbour = (gt.lower_name == NEIGHBOUR_CLASSES[name]
                 if name in NEIGHBOUR_CLASSES else np.zeros_like(same))
    hard = ((gt.occluded > MAX_OCCLUSION[difficulty])
            | (gt.truncated > MAX_TRUNCATION[difficulty])
            | (gt.height <= MIN_HEIGHT[difficulty]))
    ignored_gt = np.full(len(gt.name), -1, np.int64)
    ignored_gt[neighbour | (same & hard)] = 1
    ignored_gt[same & ~hard] = 0
    ignored_dt = np.where(dt.lower_name == name, 0, -1).astype(np.int64)
    ignored_dt[np.abs(dt.height) < MIN_HEIGHT[difficulty]] = 1
    return ignored_gt, ignored_dt


def _precision(counts: np.ndarray,
               column: int) -> np.ndarray:
    """41-point precision (column 0) or orientation similarity (column 3)
    over TP + FP, made non-increasing from the right (``eval_class``)."""
    values = np.zeros(NUM_SAMPLE_POINTS)
    with np.errstate(divide='ignore', invalid='ignore'):
        values[:len(counts)] = counts[:, column] / (counts[:, 0] +
                                                     counts[:, 1])
    return np.maximum.accumulate(values[::-1])[::-1]


def _average_precision(precision: np.ndarray) -> Tuple[float, float]:
    """(AP R11, AP R40) in percent (``get_mAP`` and ``get_mAP_R40``)."""
    r11 = 0.0
    for i in range(0, NUM_SAMPLE_POINTS, 4):
        r11 = r11 + precision[i]
    r40 = 0.0
    for i in range(1, NUM_SAMPLE_POINTS):
        r40 = r40 + precision[i]
    return float(r11 / 11 * 100), float(r40 / 40 * 100)


def _format_table(classes: Sequence[str], results: Dict[str, float],
                  eval_types: Sequence[str]) -> str:
    lines = []
    rows = [('bbox', '2D', 'bbox'), ('bev', 'BEV', 'bev '),
            ('3d', '3D', '3d  '), ('aos', 'AOS', 'aos ')]
    for name in classes:
        for k, suffix in enumerate(('', '_loose')):
            overlaps = ', '.join(f'{v:.2f}'
                                 for v in KITTI_MIN_OVERLAPS[name][k])
            for recall in ('R11', 'R40'):
                lines.append(f'{name} AP_{recall}@{overlaps}:')
                for eval_type, key, label in rows:
                    values = [
                        results.get(f'{name}_{key}_{d}_{recall}{suffix}')
                        for d in DIFFICULTIES]
                    if eval_type in eval_types and None not in values:
                        lines.append(f'{label} AP:' + ', '.join(
                            f'{v:.4f}' for v in values))
    return '\n'.join(lines) + '\n'


def kitti_eval(gt_annos: List[dict],
               dt_annos: List[dict],
               classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
               eval_types: Sequence[str] = EVAL_TYPES
               ) -> Tuple[str, Dict[str, float]]:
    """KITTI AP of detections against ground truth, as the official devkit.

    Args:
        gt_annos: one dict per frame in the official ``kitti_common`` format
            (``name``, ``truncated``, ``occluded``, ``alpha``, ``bbox``,
            ``dimensions`` as l, h, w, ``location``, ``rotation_y``), with
            every object of the label file (DontCare, Van, ...).
        dt_annos: the detections of the same frames in the same order, same
            format plus ``score`` (``truncated``/``occluded`` not needed).
        classes: classes to score (Car, Pedestrian, Cyclist, Van,
            Person_sitting).
        eval_types: any of 'bbox', 'aos', 'bev', '3d'.

    Returns:
        The printed table and ``{Class}_{2D|AOS|BEV|3D}_{easy|moderate|hard}
        _{R11|R40}`` APs in percent for the strict overlaps, the same keys
        with ``_loose`` for the second set. AOS keys are absent when the
        detections carry no alpha (-10), as the devkit prints no AOS then.
    """
    for name in classes:
        if name not in KITTI_MIN_OVERLAPS:
            raise ValueError(f'unknown KITTI class {name!r}; the devkit '
                             f'scores {sorted(KITTI_MIN_OVERLAPS)}')
    for eval_type in eval_types:
        if eval_type not in EVAL_TYPES:
            raise ValueError(f'unknown eval type {eval_type!r}; expected '
                             f'some of {EVAL_TYPES}')
    gt = _Frames(gt_annos, GT_KEYS, 'gt_annos')
    dt = _Frames(dt_annos, DT_KEYS, 'dt_annos')
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f'gt_annos has {len(gt_annos)} frames but dt_annos '
                         f'has {len(dt_annos)}; they must be the same frames '
                         'in the same order')
    if not gt_annos:
        raise ValueError('gt_annos and dt_annos hold no frames')
    first_alphas = [anno['alpha'] for anno in dt_annos if len(anno['alpha'])]
    compute_aos = ('aos' in eval_types and bool(first_alphas)
                   and first_alphas[0][0] != -10)
    # DontCare regions and how much of each detection lies inside them
    dontcare = gt.name == 'DontCare'
    frame_of_gt = np.repeat(np.arange(len(gt_annos)), np.diff(gt.starts))
    dc_starts = np.zeros(len(gt_annos) + 1, np.int64)
    np.cumsum(np.bincount(frame_of_gt[dontcare], minlength=len(gt_annos)),
              out=dc_starts[1:])
    dc_overlaps, dc_ov_starts = segment_overlaps(
        BOX2D_OVER_FIRST, dt.bbox, gt.bbox[dontcare], dt.starts, dc_starts)

    results = {}
    wanted = [t for t in ('bbox', 'bev', '3d')
              if t in eval_types or (t == 'bbox' and compute_aos)]
    flags = {(name, d): _ignore_flags(gt, dt, name, d)
             for name in classes for d in range(3)}
    for eval_type in wanted:
        kind, column, key = _METRICS[eval_type]
        boxes = {BOX2D: (dt.bbox, gt.bbox), BEV: (dt.bev(), gt.bev()),
                 BOX3D: (dt.box3d, gt.box3d)}[kind]
        overlaps, ov_starts = segment_overlaps(kind, *boxes, dt.starts,
                                               gt.starts)
        for name in classes:
            for k, suffix in enumerate(('', '_loose')):
                min_overlap = KITTI_MIN_OVERLAPS[name][k][column]
                for d, difficulty in enumerate(DIFFICULTIES):
                    ignored_gt, ignored_dt = flags[name, d]
                    use_aos = compute_aos and kind == BOX2D
                    _, counts = _precision_counts(
                        overlaps, ov_starts, gt.starts, dt.starts,
                        ignored_gt, ignored_dt, dt.score, gt.alpha, dt.alpha,
                        dc_overlaps, dc_ov_starts, dc_starts, kind == BOX2D,
                        min_overlap, use_aos)
                    outputs = [(key, 0)] if eval_type in eval_types else []
                    if use_aos:
                        outputs.append(('AOS', 3))
                    for out_key, out_column in outputs:
                        r11, r40 = _average_precision(
                            _precision(counts, out_column))
                        base = f'{name}_{out_key}_{difficulty}'
                        results[f'{base}_R11{suffix}'] = r11
                        results[f'{base}_R40{suffix}'] = r40
    return _format_table(classes, results, eval_types), results
