"""Overlap of KITTI boxes on the CPU: 2D IoU, rotated bird's-eye-view IoU and
3D IoU of camera-frame boxes, as numba CPU kernels.

The official devkit evaluator (traveller59/kitti-object-eval-python,
``rotate_iou.py``) computes the rotated IoU with a ``numba.cuda`` kernel in
float32, so evaluating needs a GPU. Here the intersection of two rotated
rectangles is the convex polygon left after clipping one by the four edge
half-planes of the other (Sutherland-Hodgman), its area by the shoelace
formula, in float64; pairs whose circumscribed circles are apart are 0
without clipping.

Box layouts (the official ones):

- 2D: ``(x1, y1, x2, y2)`` pixels, no ``+1`` on widths (``image_box_overlap``).
- BEV: ``(x, z, l, w, ry)``: centre in the camera x-z plane, length along
  the heading, width, rotation around the camera y axis; the heading is
  ``(cos ry, -sin ry)`` in (x, z) (``rbbox_to_corners``).
- 3D: ``(x, y, z, l, h, w, ry)``: bottom centre (y points down), the data
  contract's camera box (``d3_box_overlap`` with ``z_axis=1, z_center=1``).
"""
import math

import numba
import numpy as np

__all__ = [
    'box2d_iou', 'bev_box_intersection', 'bev_box_iou', 'box3d_iou',
    'segment_overlaps'
]

#: Kinds of :func:`_segment_overlaps`.
BOX2D, BEV, BOX3D, BOX2D_OVER_FIRST = 0, 1, 2, 3


@numba.njit(cache=True)
def _bev_corners(x, z, length, width, ry, out):
    """Corners of a BEV box into ``out`` (4, 2), counter-clockwise (a proper
    rotation keeps the sense of the local order)."""
    c = math.cos(ry)
    s = math.sin(ry)
    for k in range(4):
        dx = length / 2 if k == 1 or k == 2 else -length / 2
        dz = width / 2 if k >= 2 else -width / 2
        out[k, 0] = c * dx + s * dz + x
        out[k, 1] = -s * dx + c * dz + z


@numba.njit(cache=True)
def _clip_area(work):
    """Area of the intersection of the convex counter-clockwise quads
    ``work[0, :4]`` and ``work[1, :4]``.

    The first is clipped by each edge line of the second in turn (points on
    the line count as inside); every clip adds at most one vertex, so the
    (8, 2) buffers ``work[2]`` and ``work[3]`` hold the result.
    """
    subject, clip = work[0], work[1]
    src, dst = work[2], work[3]
    n = 4
    for k in range(4):
        src[k, 0] = subject[k, 0]
        src[k, 1] = subject[k, 1]
    for e in range(4):
        ax, az = clip[e, 0], clip[e, 1]
        ex = clip[(e + 1) % 4, 0] - ax
        ez = clip[(e + 1) % 4, 1] - az
        m = 0
        px, pz = src[n - 1, 0], src[n - 1, 1]
        p_side = ex * (pz - az) - ez * (px - ax)
        for k in range(n):
            qx, qz = src[k, 0], src[k, 1]
            q_side = ex * (qz - az) - ez * (qx - ax)
            if (q_side >= 0) != (p_side >= 0):
                t = p_side / (p_side - q_side)
                dst[m, 0] = px + t * (qx - px)
                dst[m, 1] = pz + t * (qz - pz)
                m += 1
            if q_side >= 0:
                dst[m, 0] = qx
                dst[m, 1] = qz
                m += 1
            px, pz, p_side = qx, qz, q_side
        n = m
        if n < 3:
            return 0.0
        src, dst = dst, src
    area = 0.0
    for k in range(n):
        j = (k + 1) % n
        area += src[k, 0] * src[j, 1] - src[j, 0] * src[k, 1]
    return max(area / 2, 0.0)


@numba.njit(cache=True)
def _bev_intersection(ax, az, al, aw, ar, bx, bz, bl, bw, br, work):
    """Intersection area of two BEV boxes (x, z, l, w, ry); ``work`` is
    (4, 8, 2) scratch."""
    reach = 0.5 * (math.sqrt(al * al + aw * aw) + math.sqrt(bl * bl + bw * bw))
    dx = ax - bx
    dz = az - bz
    if dx * dx + dz * dz >= reach * reach:
        return 0.0
    _bev_corners(ax, az, al, aw, ar, work[0])
    _bev_corners(bx, bz, bl, bw, br, work[1])
    return _clip_area(work)


@numba.njit(cache=True)
def _pair_overlap(kind, a, b, work):
    """Overlap of box ``a`` with box ``b`` (layouts: module docstring).

    ``BOX2D``: IoU; ``BOX2D_OVER_FIRST``: intersection / area of ``a`` (the
    devkit's criterion 0, used for DontCare regions); ``BEV``: rotated IoU;
    ``BOX3D``: 3D IoU.
    """
    if kind == BOX2D or kind == BOX2D_OVER_FIRST:
        iw = min(a[2], b[2]) - max(a[0], b[0])
        if iw <= 0:
            return 0.0
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if ih <= 0:
            return 0.0
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        if kind == BOX2D_OVER_FIRST:
            return iw * ih / area_a
        return iw * ih / (area_a + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)
    if kind == BEV:
        inter = _bev_intersection(a[0], a[1], a[2], a[3], a[4], b[0], b[1],
                                  b[2], b[3], b[4], work)
        if inter <= 0:
            return 0.0
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)
    # 3D: y is the bottom (down), a box spans [y - h, y]
    ih = min(a[1], b[1]) - max(a[1] - a[4], b[1] - b[4])
    if ih <= 0:
        return 0.0
    inter = _bev_intersection(a[0], a[2], a[3], a[5], a[6], b[0], b[2], b[3],
                              b[5], b[6], work)
    if inter <= 0:
        return 0.0
    inter *= ih
    return inter / (a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter)


@numba.njit(cache=True)
def _dense_overlaps(kind, boxes, qboxes):
    out = np.zeros((boxes.shape[0], qboxes.shape[0]))
    work = np.empty((4, 8, 2))
    for i in range(boxes.shape[0]):
        for j in range(qboxes.shape[0]):
            out[i, j] = _pair_overlap(kind, boxes[i], qboxes[j], work)
    return out


@numba.njit(cache=True)
def _dense_bev_intersection(boxes, qboxes):
    out = np.zeros((boxes.shape[0], qboxes.shape[0]))
    work = np.empty((4, 8, 2))
    for i in range(boxes.shape[0]):
        for j in range(qboxes.shape[0]):
            a, b = boxes[i], qboxes[j]
            out[i, j] = _bev_intersection(a[0], a[1], a[2], a[3], a[4], b[0],
                                          b[1], b[2], b[3], b[4], work)
    return out


@numba.njit(cache=True)
def _segment_overlaps(kind, boxes, qboxes, starts, qstarts, out_starts):
    """Per-frame overlap matrices of boxes ``[starts[f], starts[f+1])`` with
    query boxes ``[qstarts[f], qstarts[f+1])``, written row-major into one
    flat array at ``out_starts[f]`` (frames never meet)."""
    out = np.zeros(out_starts[-1])
    work = np.empty((4, 8, 2))
    for f in range(starts.shape[0] - 1):
        nq = qstarts[f + 1] - qstarts[f]
        for i in range(starts[f], starts[f + 1]):
            row = out_starts[f] + (i - starts[f]) * nq
            for j in range(qstarts[f], qstarts[f + 1]):
                out[row + j - qstarts[f]] = _pair_overlap(
                    kind, boxes[i], qboxes[j], work)
    return out


def _as_boxes(boxes, width: int, name: str) -> np.ndarray:
    boxes = np.ascontiguousarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != width:
        raise ValueError(f'{name} must have shape (N, {width}), got '
                         f'{boxes.shape}')
    return boxes


def box2d_iou(boxes: np.ndarray, qboxes: np.ndarray) -> np.ndarray:
    """(N, K) IoU of 2D boxes (N, 4) and (K, 4) ``x1, y1, x2, y2``."""
    return _dense_overlaps(BOX2D, _as_boxes(boxes, 4, 'boxes'),
                           _as_boxes(qboxes, 4, 'qboxes'))


def bev_box_intersection(boxes: np.ndarray, qboxes: np.ndarray) -> np.ndarray:
    """(N, K) intersection areas of BEV boxes (N, 5), (K, 5) ``x, z, l, w,
    ry`` (the official ``rotate_iou_gpu_eval`` with criterion 2)."""
    return _dense_bev_intersection(_as_boxes(boxes, 5, 'boxes'),
                                   _as_boxes(qboxes, 5, 'qboxes'))


def bev_box_iou(boxes: np.ndarray, qboxes: np.ndarray) -> np.ndarray:
    """(N, K) rotated IoU of BEV boxes (N, 5), (K, 5) ``x, z, l, w, ry``."""
    return _dense_overlaps(BEV, _as_boxes(boxes, 5, 'boxes'),
                           _as_boxes(qboxes, 5, 'qboxes'))


def box3d_iou(boxes: np.ndarray, qboxes: np.ndarray) -> np.ndarray:
    """(N, K) 3D IoU of camera boxes (N, 7), (K, 7) ``x, y, z, l, h, w, ry``
    (bottom centre, y down; the devkit's ``d3_box_overlap``)."""
    return _dense_overlaps(BOX3D, _as_boxes(boxes, 7, 'boxes'),
                           _as_boxes(qboxes, 7, 'qboxes'))


def segment_overlaps(kind: int, boxes: np.ndarray, qboxes: np.ndarray,
                     starts: np.ndarray, qstarts: np.ndarray):
    """Overlaps of each frame's boxes with the same frame's query boxes.

    ``starts``/``qstarts`` (F + 1,) delimit frame f's boxes
    ``boxes[starts[f]:starts[f + 1]]``. Returns the flat array of the F
    row-major matrices and its (F + 1,) offsets.
    """
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    qstarts = np.ascontiguousarray(qstarts, dtype=np.int64)
    out_starts = np.zeros_like(starts)
    np.cumsum(np.diff(starts) * np.diff(qstarts), out=out_starts[1:])
    return _segment_overlaps(kind, np.ascontiguousarray(boxes, np.float64),
                             np.ascontiguousarray(qboxes, np.float64),
                             starts, qstarts, out_starts), out_starts
