"""KITTI label files <-> the official ``kitti_common`` annotation dicts.

The annotation dict is the one traveller59's ``kitti_object_eval_python``
(``kitti_common.get_label_anno``) builds and every KITTI evaluator reads:
``name`` (N,) str, ``truncated`` (N,), ``occluded`` (N,) int, ``alpha``
(N,), ``bbox`` (N, 4) x1 y1 x2 y2, ``dimensions`` (N, 3) in **l, h, w**
(the file stores h, w, l), ``location`` (N, 3) bottom centre in the camera
frame, ``rotation_y`` (N,) and ``score`` (N,) (zeros for 15-field ground
truth). Files are read by :func:`vitdense.datasets.kitti_mono.
parse_kitti_label` and :func:`~vitdense.datasets.kitti_mono.
kitti_eval_annotation`, so the dataset and the evaluator read them alike.
"""
import glob
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from vitdense.datasets.kitti_mono import (kitti_eval_annotation,
                                          parse_kitti_label)

__all__ = [
    'read_kitti_label_file', 'read_kitti_label_dir', 'round_kitti_anno',
    'write_kitti_label_file'
]

#: Decimals of every float field written by :func:`write_kitti_label_file`:
#: ``kitti_common.kitti_result_line``'s default precision (also mmdet3d's
#: KITTI submission format). MonoDETR's ``save_results`` writes ``%.2f``,
#: which turns close scores into ties and changes the ranking.
KITTI_PRECISION = 4


def round_kitti_anno(anno: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``anno`` with its float fields at the precision
    :func:`write_kitti_label_file` writes: the rounded values are the ones
    read back from the file (``n / 10**4`` is the nearest double to the
    written decimal), so an evaluation of the rounded anno equals the
    evaluation of the written file."""
    return {key: np.round(value, KITTI_PRECISION)
            if key not in ('name', 'occluded') else value
            for key, value in anno.items()}


def read_kitti_label_file(path: str) -> Dict[str, np.ndarray]:
    """Read one KITTI label (15 fields) or result (16 fields) file.

    Raises:
        ValueError: naming ``path:line`` for a malformed line, or a file
            that mixes lines with and without a score.
    """
    objects = parse_kitti_label(path)
    with_score = [obj['score'] is not None for obj in objects]
    if any(with_score) and not all(with_score):
        line = with_score.index(not with_score[0]) + 1
        raise ValueError(
            f'{path}: object {line} has {16 if with_score[line - 1] else 15} '
            f'fields but the first has {16 if with_score[0] else 15}; a '
            'file holds either labels (15) or results with a score (16)')
    anno = kitti_eval_annotation(objects)
    if all(with_score) and objects:
        anno['score'] = np.array([obj['score'] for obj in objects], float)
    return anno


def read_kitti_label_dir(
        folder: str,
        sample_ids: Optional[Sequence[str]] = None
) -> List[Dict[str, np.ndarray]]:
    """Read ``{folder}/{sample_id}.txt`` for each sample id, in order.

    Args:
        folder (str): a ``label_2`` folder or a submission's ``data`` folder.
        sample_ids (Sequence[str], optional): the frames to read; a listed
            frame without a file is an empty frame (no objects, as the
            KITTI server reads a frame with no detections). None reads
            every ``*.txt`` of the folder, sorted by name.

    Returns:
        list[dict]: one ``kitti_common`` annotation dict per frame.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'KITTI label folder {folder} does not exist')
    if sample_ids is None:
        sample_ids = sorted(
            osp.splitext(osp.basename(path))[0]
            for path in glob.glob(osp.join(folder, '*.txt')))
    annos = []
    for sample_id in sample_ids:
        path = osp.join(folder, f'{sample_id}.txt')
        annos.append(read_kitti_label_file(path) if osp.isfile(path)
                     else kitti_eval_annotation([]))
    return annos


def write_kitti_label_file(path: str, anno: Dict[str, np.ndarray]) -> None:
    """Write one frame as a KITTI result file: 16 fields per object (type,
    truncated, occluded, alpha, bbox, h w l, x y z, rotation_y, score),
    floats with ``%.4f`` (``kitti_common.kitti_result_line``). An anno
    without ``score`` is written with 15 fields (a label file)."""
    dirname = osp.dirname(path)
    if dirname:
        os.makedirs(dirname, exist_ok=True)
    fmt = f'{{:.{KITTI_PRECISION}f}}'.format
    lines = []
    for i in range(len(anno['name'])):
        l, h, w = anno['dimensions'][i]
        floats = [anno['alpha'][i], *anno['bbox'][i], h, w, l,
                  *anno['location'][i], anno['rotation_y'][i]]
        if 'score' in anno:
            floats.append(anno['score'][i])
        lines.append(' '.join(
            [str(anno['name'][i]), fmt(float(anno['truncated'][i])),
             str(int(anno['occluded'][i]))] +
            [fmt(float(v)) for v in floats]))
    with open(path, 'w') as f:
        f.write(''.join(line + '\n' for line in lines))
