"""Panoptic quality (PQ, SQ, RQ) of COCO-format panoptic segmentations.

Why vitdense has its own: mmdet 3.3 takes ``rgb2id``, ``id2rgb``, ``VOID``,
``OFFSET``, ``PQStat`` and the matching itself from cocodataset/panopticapi
(``CocoPanopticMetric``, ``LoadPanopticAnnotations``,
``mmdet/evaluation/functional/panoptic_utils.py``), which is not on PyPI
(git only, last commit 2021-06); its packaged fork ``panopticapi-lite`` pins
``numpy<2``. Without it mmdet's panoptic loader and metric raise at
construction. This module provides those names and computes the numbers of
panopticapi's ``pq_compute`` (``panopticapi/evaluation.py``, commit 7bb4655),
matching the segment pairs of an image as arrays (one ``np.unique`` over
the joint ids, IoUs and void/crowd overlaps vectorised); about as fast as
panopticapi, whose time goes to the same ``np.unique`` and PNG decoding.
Equality with panopticapi is tested on ``tests/data/panoptic_pq``.

Definitions (Kirillov et al., "Panoptic Segmentation", CVPR 2019, eq. 1-2),
per category over the whole dataset::

    PQ = sum_TP IoU / (|TP| + |FP| / 2 + |FN| / 2) = SQ * RQ
    SQ = sum_TP IoU / |TP|,   RQ = |TP| / (|TP| + |FP| / 2 + |FN| / 2)

panopticapi's rules, kept exactly:

- a ground-truth and a predicted segment of the same category match when
  their IoU is above 0.5; pixels the ground truth marks ``VOID`` (id 0) are
  taken out of the union; crowd ground truth (``iscrowd`` 1) never matches;
- the ground-truth area is the json's ``area``; the predicted area is counted
  in the PNG;
- an unmatched ground truth that is not a crowd is a false negative;
- an unmatched prediction is a false positive unless more than half of it
  lies on ``VOID`` plus the crowd segment of its category (the last crowd
  segment of that category in ``segments_info``);
- PQ/SQ/RQ of a group (all, things, stuff) are the means over its categories
  with at least one TP, FP or FN (``n``); the per-class numbers of the other
  categories are 0.

One difference: a group without any such category (e.g. "stuff" of a
things-only dataset) gives NaN instead of panopticapi's ZeroDivisionError.
"""
import json
import multiprocessing
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmengine.fileio import get

__all__ = [
    'VOID', 'OFFSET', 'rgb2id', 'id2rgb', 'PQStatCat', 'PQStat',
    'pq_compute_single_image', 'pq_compute_files', 'pq_compute',
    'pq_results', 'read_panoptic_png'
]

#: Segment id of unlabelled pixels in a panoptic PNG.
VOID = 0
#: Segment ids are below 256**3 (three 8-bit channels); joint ids use it.
OFFSET = 256 * 256 * 256


def rgb2id(color: Union[np.ndarray, Sequence[int]]) -> Union[np.ndarray, int]:
    """Segment ids from panoptic PNG colours: ``R + 256 G + 256**2 B``.

    Args:
        color: an array ``(..., 3)`` (uint8 gives int32 ids, as panopticapi)
            or one ``(R, G, B)`` colour.

    Returns:
        The id array ``(...)``, or an int for one colour.
    """
    if isinstance(color, np.ndarray) and color.ndim >= 2:
        if color.shape[-1] < 3:
            raise ValueError('rgb2id needs colours in the last axis (..., 3),'
                             f' got shape {color.shape}')
        if color.dtype == np.uint8:
            color = color.astype(np.int32)
        return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
    return int(color[0] + 256 * color[1] + 256 * 256 * color[2])


def id2rgb(id_map: Union[np.ndarray, int]) -> Union[np.ndarray, List[int]]:
    """Panoptic PNG colours from segment ids (inverse of :func:`rgb2id`).

    Args:
        id_map: an integer array ``(...)`` of ids in ``[0, 256**3)``, or one
            id.

    Returns:
        A uint8 array ``(..., 3)``, or ``[R, G, B]`` for one id.
    """
    if isinstance(id_map, np.ndarray):
        if id_map.size and (id_map.min() < 0 or id_map.max() >= OFFSET):
            raise ValueError(
                f'segment ids must lie in [0, {OFFSET}) to be stored as PNG '
                f'colours, got {int(id_map.min())}..{int(id_map.max())}')
        ids = id_map.astype(np.int64)
        return np.stack([ids % 256, ids // 256 % 256, ids // 65536],
                        -1).astype(np.uint8)
    return [int(id_map) % 256, int(id_map) // 256 % 256, int(id_map) // 65536]


class PQStatCat:
    """Sums of one category: matched IoU, TP, FP and FN counts."""

    def __init__(self) -> None:
        self.iou = 0.0
        self.tp = 0
        self.fp = 0
        self.fn = 0

    def __iadd__(self, other: 'PQStatCat') -> 'PQStatCat':
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category :class:`PQStatCat` sums, with panopticapi's interface
    (``stat[cat_id].tp``, ``stat += other``, :meth:`pq_average`), so code
    written for ``panopticapi.evaluation.PQStat`` (mmdet's) works with it."""

    def __init__(self) -> None:
        self.pq_per_cat: Dict[int, PQStatCat] = defaultdict(PQStatCat)

    def __getitem__(self, cat_id: int) -> PQStatCat:
        return self.pq_per_cat[cat_id]

    def __iadd__(self, other: 'PQStat') -> 'PQStat':
        for cat_id, stat in other.pq_per_cat.items():
            self.pq_per_cat[cat_id] += stat
        return self

    def pq_average(self, categories: Dict[int, dict],
                   isthing: Optional[bool]) -> Tuple[dict, dict]:
        """Mean PQ, SQ, RQ over ``categories`` (``{id: {'isthing': 0|1}}``),
        only things (``isthing=True``), only stuff (False) or all (None).

        Returns:
            ``({'pq', 'sq', 'rq', 'n'}, {cat_id: {'pq', 'sq', 'rq'}})``;
            ``n`` counts the categories with any TP, FP or FN.
        """
        per_class, n = {}, 0
        sums = {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
        for cat_id, info in categories.items():
            if isthing is not None and (info['isthing'] == 1) != isthing:
                continue
            stat = self.pq_per_cat.get(cat_id, PQStatCat())
            if stat.tp + stat.fp + stat.fn == 0:
                per_class[cat_id] = {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
                continue
            n += 1
            denominator = stat.tp + 0.5 * stat.fp + 0.5 * stat.fn
            values = {'pq': stat.iou / denominator,
                      'sq': stat.iou / stat.tp if stat.tp else 0.0,
                      'rq': stat.tp / denominator}
            per_class[cat_id] = values
            for key, value in values.items():
                sums[key] += value
        mean = {k: v / n if n else float('nan') for k, v in sums.items()}
        return dict(mean, n=n), per_class


def _where(image: dict) -> str:
    name = image.get('file_name')
    return f'image id {image.get("image_id")}' + (f' ({name})' if name else '')


def _lookup(sorted_ids: np.ndarray, order: np.ndarray,
            values: np.ndarray) -> np.ndarray:
    """Index of each value in the table (``order`` sorts it), or -1."""
    if not sorted_ids.size:
        return np.full(values.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == values, order[pos], -1)


def pq_compute_single_image(gt_ann: dict,
                            pred_ann: dict,
                            gt_ids: np.ndarray,
                            pred_ids: np.ndarray,
                            categories: Dict[int, dict],
                            pq_stat: Optional[PQStat] = None) -> PQStat:
    """Add one image's TP/FP/FN and matched IoUs to ``pq_stat``.

    Args:
        gt_ann (dict): ``segments_info`` (``id``, ``category_id``,
            ``iscrowd``, ``area``) and ``image_id`` (for messages).
        pred_ann (dict): ``segments_info`` (``id``, ``category_id``).
        gt_ids (np.ndarray): ground-truth segment ids ``(H, W)``.
        pred_ids (np.ndarray): predicted segment ids ``(H, W)``, 0 = void.
        categories (dict): ``{category_id: category}``; a predicted category
            outside it is an error.
        pq_stat (PQStat, optional): sums to add to; a new one if None.

    Returns:
        PQStat: ``pq_stat`` with this image added.
    """
    stat = PQStat() if pq_stat is None else pq_stat
    where = _where(gt_ann)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f'{where}: the prediction is {pred_ids.shape} but '
                         f'the ground truth is {gt_ids.shape} (H, W)')
    gt_segms = {s['id']: s for s in gt_ann['segments_info']}
    pred_segms = {s['id']: s for s in pred_ann['segments_info']}

    # predicted areas, counted in the PNG, and sanity checks
    labels, counts = np.unique(pred_ids, return_counts=True)
    if labels.size and (labels[0] < 0 or labels[-1] >= OFFSET):
        raise ValueError(f'{where}: predicted segment ids must lie in '
                         f'[0, {OFFSET}), got {labels[0]}..{labels[-1]}')
    pred_table = np.array(list(pred_segms), np.int64)
    pred_order = np.argsort(pred_table, kind='stable')
    in_json = _lookup(pred_table[pred_order], pred_order, labels)
    unknown = labels[(in_json < 0) & (labels != VOID)]
    if unknown.size:
        raise ValueError(f'{where}: predicted segment ids '
                         f'{unknown.tolist()} are in the PNG but not in '
                         'segments_info')
    pred_area = np.zeros(len(pred_table), np.int64)
    pred_area[in_json[in_json >= 0]] = counts[in_json >= 0]
    absent = pred_table[pred_area == 0]
    if absent.size:
        raise ValueError(f'{where}: predicted segment ids {absent.tolist()} '
                         'are in segments_info but not in the PNG')
    pred_cat = np.array([s['category_id'] for s in pred_segms.values()],
                        np.int64)
    strange = sorted(set(pred_cat.tolist()) - set(categories))
    if strange:
        raise ValueError(f'{where}: predicted category ids {strange} are not '
                         f'categories of the ground truth')

    gt_table = np.array(list(gt_segms), np.int64)
    gt_cat = np.array([s['category_id'] for s in gt_segms.values()], np.int64)
    gt_crowd = np.array([s['iscrowd'] == 1 for s in gt_segms.values()], bool)
    gt_area = np.array([s['area'] for s in gt_segms.values()], np.float64)
    gt_order = np.argsort(gt_table, kind='stable')

    # one row per (ground-truth id, predicted id) pair that shares pixels
    joint = gt_ids.astype(np.int64) * OFFSET + pred_ids.astype(np.int64)
    pairs, intersection = np.unique(joint, return_counts=True)
    gt_label, pred_label = pairs // OFFSET, pairs % OFFSET
    gi = _lookup(gt_table[gt_order], gt_order, gt_label)
    pi = _lookup(pred_table[pred_order], pred_order, pred_label)
    on_void = np.zeros(len(pred_table), np.int64)
    void_rows = (gt_label == VOID) & (pi >= 0)
    on_void[pi[void_rows]] = intersection[void_rows]

    rows = np.flatnonzero((gi >= 0) & (pi >= 0))
    rows = rows[~gt_crowd[gi[rows]] & (gt_cat[gi[rows]] == pred_cat[pi[rows]])]
    g, p, inter = gi[rows], pi[rows], intersection[rows]
    union = pred_area[p] + gt_area[g] - inter - on_void[p]
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = inter / union
    matched = iou > 0.5
    # pairs in joint-id order, as panopticapi adds them
    for cat_id, value in zip(gt_cat[g[matched]].tolist(),
                             iou[matched].tolist()):
        stat[cat_id].tp += 1
        stat[cat_id].iou += value
    gt_matched = np.zeros(len(gt_table), bool)
    gt_matched[g[matched]] = True
    pred_matched = np.zeros(len(pred_table), bool)
    pred_matched[p[matched]] = True

    crowd_of_cat = {}
    for index in np.flatnonzero(~gt_matched).tolist():
        if gt_crowd[index]:
            crowd_of_cat[int(gt_cat[index])] = index
        else:
            stat[int(gt_cat[index])].fn += 1

    # an unmatched prediction mostly on void or its category's crowd is
    # not a false positive
    ignored = on_void.astype(np.float64)
    if crowd_of_cat:
        crowd_index = np.array([crowd_of_cat.get(c, -1)
                                for c in pred_cat.tolist()], np.int64)
        on_crowd = (gi >= 0) & (pi >= 0)
        on_crowd[on_crowd] = gi[on_crowd] == crowd_index[pi[on_crowd]]
        np.add.at(ignored, pi[on_crowd], intersection[on_crowd])
    for index in np.flatnonzero(~pred_matched).tolist():
        if ignored[index] / pred_area[index] > 0.5:
            continue
        stat[int(pred_cat[index])].fp += 1
    return stat


def read_panoptic_png(path: str, backend_args: Optional[dict] = None
                      ) -> np.ndarray:
    """Segment ids ``(H, W)`` of a panoptic PNG, through mmengine's file
    backends (``backend_args``) as mmdet reads it."""
    try:
        data = get(path, backend_args=backend_args)
    except FileNotFoundError as error:
        raise FileNotFoundError(f'{path}: panoptic PNG not found') from error
    image = mmcv.imfrombytes(data, flag='color', channel_order='rgb')
    if image is None:
        raise ValueError(f'{path}: cannot decode the panoptic PNG')
    return rgb2id(image)


def _files_chunk(args) -> PQStat:
    matched, gt_folder, pred_folder, categories, backend_args = args
    stat = PQStat()
    for gt_ann, pred_ann in matched:
        gt_ids = read_panoptic_png(
            osp.join(gt_folder, gt_ann['file_name']), backend_args)
        pred_ids = read_panoptic_png(
            osp.join(pred_folder, pred_ann['file_name']))
        pq_compute_single_image(gt_ann, pred_ann, gt_ids, pred_ids,
                                categories, stat)
    return stat


def pq_compute_files(matched_annotations: Sequence[Tuple[dict, dict]],
                     gt_folder: str,
                     pred_folder: str,
                     categories: Dict[int, dict],
                     backend_args: Optional[dict] = None,
                     nproc: int = 1) -> PQStat:
    """:class:`PQStat` of (ground truth, prediction) annotation pairs whose
    PNGs (``file_name``) lie in ``gt_folder`` and ``pred_folder``.

    Args:
        nproc (int): worker processes (capped by the CPU count and the
            number of images); 1 computes in this process.
        backend_args (dict, optional): mmengine file backend of the ground
            truth; predictions are read from the local disk, as mmdet does.
    """
    matched = list(matched_annotations)
    nproc = max(1, min(nproc, multiprocessing.cpu_count(), len(matched)))
    chunks = [(matched[i::nproc], gt_folder, pred_folder, categories,
               backend_args) for i in range(nproc)]
    if nproc == 1:
        return _files_chunk(chunks[0])
    with multiprocessing.Pool(nproc) as pool:
        parts = pool.map(_files_chunk, chunks)
    stat = PQStat()
    for part in parts:
        stat += part
    return stat


def pq_results(pq_stat: PQStat, categories: Dict[int, dict]) -> dict:
    """panopticapi's result dict: ``'All'``, ``'Things'``, ``'Stuff'`` (each
    ``{'pq', 'sq', 'rq', 'n'}``) and ``'per_class'`` (``{cat_id: {'pq',
    'sq', 'rq'}}``), as fractions in [0, 1]."""
    results = {}
    for name, isthing in (('All', None), ('Things', True), ('Stuff', False)):
        results[name], per_class = pq_stat.pq_average(categories, isthing)
        if name == 'All':
            results['per_class'] = per_class
    return results


def pq_compute(gt_json_file: str,
               pred_json_file: str,
               gt_folder: Optional[str] = None,
               pred_folder: Optional[str] = None,
               nproc: int = 1) -> dict:
    """panopticapi's ``pq_compute``: PQ, SQ, RQ of COCO panoptic predictions.

    Args:
        gt_json_file (str): COCO panoptic ground truth (``images`` unused,
            ``annotations``, ``categories`` with ``isthing``).
        pred_json_file (str): predictions, ``{'annotations': [...]}`` with
            one entry per ground-truth image.
        gt_folder (str, optional): ground-truth PNGs; ``gt_json_file``
            without ``.json`` if None.
        pred_folder (str, optional): predicted PNGs; ``pred_json_file``
            without ``.json`` if None.
        nproc (int): worker processes. Defaults to 1.

    Returns:
        dict: see :func:`pq_results`.
    """
    with open(gt_json_file) as f:
        gt_json = json.load(f)
    with open(pred_json_file) as f:
        pred_json = json.load(f)
    gt_folder = gt_folder or gt_json_file.replace('.json', '')
    pred_folder = pred_folder or pred_json_file.replace('.json', '')
    for what, folder in (('ground-truth', gt_folder),
                         ('prediction', pred_folder)):
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'the {what} PNG folder {folder} does not exist')
    categories = {c['id']: c for c in gt_json['categories']}
    predictions = {a['image_id']: a for a in pred_json['annotations']}
    missing = [a['image_id'] for a in gt_json['annotations']
               if a['image_id'] not in predictions]
    if missing:
        raise ValueError(f'{pred_json_file}: no prediction for the image ids '
                         f'{missing[:5]}{" ..." if len(missing) > 5 else ""}')
    matched = [(a, predictions[a['image_id']]) for a in gt_json['annotations']]
    stat = pq_compute_files(matched, gt_folder, pred_folder, categories,
                            nproc=nproc)
    return pq_results(stat, categories)
