"""Pictures of monocular 3D detection: projected 3D boxes and a bird's-eye
view.

Boxes follow vitdense's KITTI convention (``(x, y, z, l, h, w, ry)`` in the
rectified camera frame, ``(x, y, z)`` the bottom centre, y down, the front
of an object along ``(cos ry, 0, -sin ry)``). mmdet's
``DetLocalVisualizer`` draws 2D boxes only and mmdet3d (which has a 3D
visualizer) cannot be installed next to mmdet 3.3, so the drawing of 3D
boxes is written here with mmengine's drawing primitives.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmdet.visualization import DetLocalVisualizer
from mmdet.visualization.palette import get_palette

from vitdense.registry import VISUALIZERS
from vitdense.structures import box3d_corners

__all__ = ['KittiMonoVisualizer', 'project_box_edges']

#: The 12 edges of a box as pairs of corner indices (order of
#: :func:`vitdense.structures.box3d_corners`), and the two diagonals that cross its front face.
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
             (0, 4), (1, 5), (2, 6), (3, 7))
FRONT_CROSS = ((0, 5), (1, 4))
#: Points closer than this (metres along the optical axis) are clipped off.
NEAR_PLANE = 0.1
_TEXT_BOX = dict(facecolor='black', alpha=0.7, pad=1.5, edgecolor='none')


def _numpy(value) -> np.ndarray:
    value = getattr(value, 'tensor', value)  # box structures
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _lighten(colour: Sequence[int], amount: float = 0.3) -> tuple:
    """Mix a colour with white: dark palette colours on the dark top
    view."""
    return tuple(int(round(c + (255 - c) * amount)) for c in colour)


def _clip_to_rect(points: np.ndarray, width: float,
                  height: float) -> Tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky: clip segments ``(M, 2, 2)`` to ``[0, width] x [0,
    height]``; return the clipped segments and which were kept."""
    start, delta = points[:, 0], points[:, 1] - points[:, 0]
    t0, t1 = np.zeros(len(points)), np.ones(len(points))
    keep = np.ones(len(points), bool)
    for p, q in ((-delta[:, 0], start[:, 0]),
                 (delta[:, 0], width - start[:, 0]),
                 (-delta[:, 1], start[:, 1]),
                 (delta[:, 1], height - start[:, 1])):
        parallel = np.abs(p) < 1e-12
        keep &= ~(parallel & (q < 0))
        with np.errstate(divide='ignore', invalid='ignore'):
            r = np.where(parallel, 0, q / np.where(parallel, 1, p))
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, r), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, r), t1)
    keep &= t0 <= t1
    clipped = np.stack([start + t0[:, None] * delta,
                        start + t1[:, None] * delta], 1)
    # rounding of t may leave an end a hair outside
    clipped = np.clip(clipped, 0, [width, height])
    return clipped[keep], keep


def _clip_polygon(polygon: np.ndarray, width: float,
                  height: float) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon ``(K, 2)`` inside
    ``[0, width] x [0, height]`` (possibly empty)."""
    for axis, bound, inside_below in ((0, 0.0, False), (0, width, True),
                                      (1, 0.0, False), (1, height, True)):
        if not len(polygon):
            break
        inside = polygon[:, axis] <= bound if inside_below else \
            polygon[:, axis] >= bound
        kept = []
        for i in range(len(polygon)):
            a, b = polygon[i - 1], polygon[i]
            if inside[i] != inside[i - 1]:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                kept.append(a + t * (b - a))
            if inside[i]:
                kept.append(b)
        polygon = np.array(kept).reshape(-1, 2)
    return polygon


def project_box_edges(corners: np.ndarray, cam2img: np.ndarray,
                      image_size: Tuple[int, int],
                      pairs: Sequence[Tuple[int, int]] = BOX_EDGES
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Project box edges into an image, clipped to what is visible.

    Each edge (a pair of corners of ``corners`` ``(N, 8, 3)``) is first cut
    at the near plane (depth ``NEAR_PLANE`` in front of the camera; depth is
    the third row of ``cam2img``, so an edge behind the camera is dropped
    and one crossing it is shortened, never projected through infinity),
    then clipped to the image ``(height, width)``.

    Returns:
        tuple: segments ``(M, 2, 2)`` in pixels and the box index of each.
    """
    cam2img = np.asarray(cam2img, np.float64)
    pairs = np.asarray(pairs)
    ends = corners[:, pairs]  # (N, E, 2, 3)
    homogeneous = np.concatenate([ends, np.ones(ends.shape[:-1] + (1,))], -1)
    depth = homogeneous @ cam2img[2]  # (N, E, 2)
    owner = np.broadcast_to(np.arange(len(corners))[:, None],
                            depth.shape[:2]).reshape(-1)
    homogeneous = homogeneous.reshape(-1, 2, 4)
    depth = depth.reshape(-1, 2)
    front = depth >= NEAR_PLANE
    keep = front.any(1)
    homogeneous, depth, owner = homogeneous[keep], depth[keep], owner[keep]
    # move the end behind the near plane onto it (depth is linear in t)
    for end in (0, 1):
        behind = depth[:, end] < NEAR_PLANE
        other = 1 - end
        t = (NEAR_PLANE - depth[behind, other]) / (
            depth[behind, end] - depth[behind, other])
        homogeneous[behind, end] = homogeneous[behind, other] + t[:, None] * (
            homogeneous[behind, end] - homogeneous[behind, other])
    projected = homogeneous @ cam2img.T  # (M, 2, 3)
    pixels = projected[..., :2] / projected[..., 2:]
    height, width = image_size
    segments, kept = _clip_to_rect(pixels, width, height)
    return segments, owner[kept]


@VISUALIZERS.register_module()
class KittiMonoVisualizer(DetLocalVisualizer):
    """Draw monocular 3D ground truth and predictions of a KITTI-style
    sample, with a bird's-eye-view panel.

    The picture has the image with the projected ground-truth 3D boxes, below
    it the image with the predicted ones (``pred_instances_3d`` above
    ``pred_score_thr``, score printed), and on the right a top view
    (x to the right, z forward, ego camera at the bottom, a grid line every
    ``grid_step`` metres) with ground truth filled and predictions outlined,
    both with a heading line. Every box has its 12 edges drawn in its class
    colour (``dataset_meta['palette']``) and a cross on its front face.

    Ground truth is read from ``gt_instances_3d`` (``bboxes_3d``,
    ``labels_3d``) or, where the test pipeline loads no annotations, from
    ``eval_ann_info`` (the KITTI label of the original image). The
    projection is ``ori_cam2img`` when ``image`` has the original shape
    (``DetVisualizationHook`` draws the file image), else ``cam2img`` (the
    transformed input, as ``tools/misc/browse_dataset.py`` draws it).

    Args:
        bev_range (tuple): ``(x_min, x_max, z_min, z_max)`` of the top view
            in metres.
        grid_step (float): metres between grid lines of the top view.
        min_width (int): images narrower than this are enlarged before
            drawing so that lines and text stay legible (the embedded KITTI
            data is 310 pixels wide).
        min_height (int): the least height of the picture (the top view is
            as tall as the picture).
        Others as :class:`mmdet.visualization.DetLocalVisualizer`.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 image: Optional[np.ndarray] = None,
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None,
                 bbox_color=None,
                 text_color=(255, 255, 255),
                 line_width: float = 2.0,
                 alpha: float = 0.35,
                 bev_range: Tuple[float, float, float, float] = (
                     -25., 25., -2., 50.),
                 grid_step: float = 10.,
                 min_width: int = 960,
                 min_height: int = 480) -> None:
        super().__init__(name=name, image=image, vis_backends=vis_backends,
                         save_dir=save_dir, bbox_color=bbox_color,
                         text_color=text_color, line_width=line_width,
                         alpha=alpha)
        x_min, x_max, z_min, z_max = bev_range
        if not (x_min < x_max and z_min < z_max):
            raise ValueError('bev_range must be (x_min, x_max, z_min, z_max) '
                             f'with min < max, got {bev_range}')
        self.bev_range = tuple(float(v) for v in bev_range)
        self.grid_step = grid_step
        self.min_width = min_width
        self.min_height = min_height

    def _palette(self, num: int) -> List[Tuple[int, int, int]]:
        palette = self.bbox_color if self.bbox_color is not None else \
            self.dataset_meta.get('palette', 'random')
        return [tuple(int(c) for c in colour)
                for colour in get_palette(palette, max(num, 1))]

    @staticmethod
    def _projection(image_shape: Tuple[int, int],
                    metainfo: dict) -> np.ndarray:
        """``ori_cam2img`` for an image of the original shape (unless it is
        the flipped input of the same shape), else ``cam2img``."""
        shape = tuple(image_shape)
        ori_shape = metainfo.get('ori_shape')
        img_shape = metainfo.get('img_shape')
        is_original = ori_shape is not None and \
            shape == tuple(ori_shape[:2]) and not (
                metainfo.get('flip', False) and img_shape is not None
                and shape == tuple(img_shape[:2]))
        if is_original and 'ori_cam2img' in metainfo:
            return _numpy(metainfo['ori_cam2img'])
        if 'cam2img' in metainfo and (img_shape is None
                                      or shape == tuple(img_shape[:2])):
            return _numpy(metainfo['cam2img'])
        if 'ori_cam2img' in metainfo and ori_shape is None:
            return _numpy(metainfo['ori_cam2img'])
        raise ValueError(
            f'KittiMonoVisualizer: no projection for an image of shape '
            f'{shape}: the data sample has ori_shape={ori_shape} '
            f'(with ori_cam2img: {"ori_cam2img" in metainfo}) and '
            f'img_shape={img_shape} (with cam2img: {"cam2img" in metainfo})')

    def _ground_truth(self, data_sample) -> Optional[Tuple[np.ndarray,
                                                           np.ndarray]]:
        if 'gt_instances_3d' in data_sample:
            gt = data_sample.gt_instances_3d
            if 'bboxes_3d' in gt:
                return (_numpy(gt.bboxes_3d).reshape(-1, 7),
                        _numpy(gt.labels_3d).astype(np.int64).reshape(-1))
        ann = data_sample.get('eval_ann_info')
        if ann is None or 'location' not in ann:
            return None
        classes = list(self.dataset_meta.get('classes', ()))
        known = np.array([name in classes for name in ann['name']], bool)
        boxes = np.concatenate([
            np.asarray(ann['location'], np.float64).reshape(-1, 3),
            np.asarray(ann['dimensions'], np.float64).reshape(-1, 3),
            np.asarray(ann['rotation_y'], np.float64).reshape(-1, 1)], 1)
        labels = np.array([classes.index(n) for n in
                           np.asarray(ann['name'])[known]], np.int64)
        return boxes[known], labels

    @staticmethod
    def _predictions(data_sample, score_thr: float
                     ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if 'pred_instances_3d' not in data_sample:
            return None
        pred = data_sample.pred_instances_3d
        boxes = _numpy(pred.bboxes_3d).reshape(-1, 7)
        labels = _numpy(pred.labels_3d).astype(np.int64).reshape(-1)
        scores = _numpy(pred.scores_3d).reshape(-1)
        keep = scores > score_thr
        order = np.argsort(scores[keep])  # best drawn last, on top
        return boxes[keep][order], labels[keep][order], scores[keep][order]

    def _title(self, text: str, position=(4, 4), size: int = 11) -> None:
        self.draw_texts(text, np.array(position), colors=(255, 255, 255),
                        font_sizes=size, bboxes=_TEXT_BOX)

    def _segments(self, segments: np.ndarray, colours: list, width: float,
                  style: str = '-', halo: bool = False) -> None:
        """Draw segments ``(M, 2, 2)`` clipped to the canvas; ``halo`` puts
        a dark outline under them so they show on any image."""
        # mmengine wants coordinates strictly below width/height
        segments, keep = _clip_to_rect(segments, self.width - 0.01,
                                       self.height - 0.01)
        if not len(segments):
            return
        colours = [c for c, k in zip(colours, keep) if k]
        if halo:
            self.draw_lines(segments[:, :, 0], segments[:, :, 1],
                            colors=(0, 0, 0), line_widths=width + 1.5,
                            line_styles=style)
        self.draw_lines(segments[:, :, 0], segments[:, :, 1], colors=colours,
                        line_widths=width, line_styles=style)

    def _canvas(self) -> np.ndarray:
        """The drawn canvas, its view fixed to the image (matplotlib would
        otherwise widen it to anything drawn outside)."""
        self.ax_save.set_xlim(0, self.width)
        self.ax_save.set_ylim(self.height, 0)
        return self.get_image()

    def _draw_image_panel(self, image: np.ndarray, cam2img: np.ndarray,
                          boxes: np.ndarray, labels: np.ndarray,
                          colours: list, title: str,
                          scores: Optional[np.ndarray] = None) -> np.ndarray:
        """The image with projected boxes: 12 edges, a front-face cross and,
        for predictions, the score above the box."""
        self.set_image(image)
        height, width = image.shape[:2]
        if len(boxes):
            corners = box3d_corners(boxes)
            edges, owner = project_box_edges(corners, cam2img, (height,
                                                                width))
            cross, cross_owner = project_box_edges(corners, cam2img,
                                                   (height, width),
                                                   FRONT_CROSS)
            for segments, index, scale in ((edges, owner, 1.0),
                                           (cross, cross_owner, 0.7)):
                self._segments(segments,
                               [_lighten(colours[labels[i]]) for i in index],
                               self.line_width * scale, halo=True)
            if scores is not None:
                for i in np.unique(owner):
                    points = edges[owner == i].reshape(-1, 2)
                    x, y = points[:, 0].min(), points[:, 1].min()
                    below = y < 14
                    self.draw_texts(
                        f'{scores[i]:.2f}',
                        np.array([min(x, width - 30), y + 2 if below else
                                  y - 2]),
                        colors=self.text_color, font_sizes=8,
                        vertical_alignments='top' if below else 'bottom',
                        bboxes=dict(_TEXT_BOX,
                                    facecolor=np.array(colours[labels[i]]) /
                                    255, alpha=0.85, pad=0.8))
        self._title(title)
        return self._canvas()

    def _bev_point(self, x, z, ppm: float) -> np.ndarray:
        x_min, _, _, z_max = self.bev_range
        return np.stack([(np.asarray(x) - x_min) * ppm,
                         (z_max - np.asarray(z)) * ppm], -1)

    def _draw_bev_panel(self, height: int, cam2img: np.ndarray,
                        image_width: int, gt, pred, colours: list,
                        classes: Sequence[str]) -> np.ndarray:
        """Top view: x-z grid, ego camera with its field of view, ground
        truth filled, predictions dashed, heading lines to the front."""
        x_min, x_max, z_min, z_max = self.bev_range
        ppm = height / (z_max - z_min)  # pixels per metre
        width = int(round((x_max - x_min) * ppm))
        self.set_image(np.full((height, width, 3), 32, np.uint8))
        step = self.grid_step
        xs = np.arange(np.ceil(x_min / step), np.floor(x_max / step) + 1)
        zs = np.arange(np.ceil(z_min / step), np.floor(z_max / step) + 1)
        grid = [self._bev_point([v * step] * 2, [z_min, z_max], ppm)
                for v in xs]
        grid += [self._bev_point([x_min, x_max], [v * step] * 2, ppm)
                 for v in zs]
        grid = np.stack(grid)
        self._segments(grid, [(75, 75, 75)] * len(grid), 0.6)
        for v in zs[(zs > 0) & (zs * step < z_max)]:
            self.draw_texts(f'{v * step:g} m',
                            self._bev_point(x_min + 0.3, v * step, ppm),
                            colors=(150, 150, 150), font_sizes=7,
                            vertical_alignments='bottom')
        # ego camera: the optical centre and the image's left/right rays
        centre = -np.linalg.lstsq(cam2img[:, :3], cam2img[:, 3],
                                  rcond=None)[0]
        reach = 2 * (z_max - centre[2])
        fov = []
        for u in (0.0, float(image_width)):
            ray = np.linalg.solve(cam2img[:, :3], np.array([u, 0, 1.0]))
            fov.append(self._bev_point(
                [centre[0], centre[0] + ray[0] / ray[2] * reach],
                [centre[2], centre[2] + reach], ppm))
        self._segments(np.stack(fov), [(150, 150, 150)] * 2, 0.8, '--')
        ego = self._bev_point(centre[0] + np.array([0, -0.8, 0.8]),
                              centre[2] + np.array([1.4, -0.5, -0.5]), ppm)
        ego = _clip_polygon(ego, width - 0.01, height - 0.01)
        if len(ego) >= 3:
            self.draw_polygons(ego, edge_colors=(255, 255, 255),
                               face_colors=(255, 255, 255), alpha=1.0,
                               line_widths=0.5)
        for instances, filled in ((gt, True), (pred, False)):
            if instances is None or not len(instances[0]):
                continue
            boxes, labels = instances[0], instances[1]
            corners = box3d_corners(boxes)[:, :4]  # footprint, (N, 4, 3)
            footprints = self._bev_point(corners[..., 0], corners[..., 2],
                                         ppm)  # (N, 4, 2)
            # predictions lighter, so they show on the ground truth
            box_colours = [_lighten(colours[label], 0.3 if filled else 0.6)
                           for label in labels]
            if filled:
                for polygon, colour in zip(footprints, box_colours):
                    polygon = _clip_polygon(polygon, width - 0.01,
                                             height - 0.01)
                    if len(polygon) >= 3:
                        self.draw_polygons(polygon, edge_colors=colour,
                                           face_colors=colour,
                                           alpha=self.alpha, line_widths=0)
            outline = np.stack([footprints, np.roll(footprints, -1, 1)], 2)
            self._segments(outline.reshape(-1, 2, 2),
                           [c for c in box_colours for _ in range(4)],
                           self.line_width * (0.6 if filled else 1.0),
                           '-' if filled else '--')
            heading = np.stack([footprints.mean(1),
                                footprints[:, :2].mean(1)], 1)
            self._segments(heading, box_colours, self.line_width)
        legend = ['bird\'s-eye view']
        if gt is not None:
            legend.append('ground truth: filled')
        if pred is not None:
            legend.append('predictions: dashed')
        self._title('\n'.join(legend), size=9)
        for i, name in enumerate(classes):
            self.draw_texts(name, np.array([width - 4, 4 + 20 * i]),
                            colors=_lighten(colours[i]), font_sizes=9,
                            horizontal_alignments='right', bboxes=_TEXT_BOX)
        return self._canvas()

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """Draw a data sample and save it to ``out_file`` or the backends.

        As :meth:`DetLocalVisualizer.add_datasample` (``image`` RGB); 3D
        ground truth and predictions are drawn as described in the class
        docstring. Without 3D fields the picture is mmdet's.
        """
        image = image.clip(0, 255).astype(np.uint8)
        if data_sample is None or not ('gt_instances_3d' in data_sample or
                                       'pred_instances_3d' in data_sample or
                                       'eval_ann_info' in data_sample):
            return super().add_datasample(
                name, image, data_sample, draw_gt=draw_gt,
                draw_pred=draw_pred, show=show, wait_time=wait_time,
                out_file=out_file, pred_score_thr=pred_score_thr, step=step)
        data_sample = data_sample.cpu()
        cam2img = self._projection(image.shape[:2], data_sample.metainfo)
        classes = list(self.dataset_meta.get('classes', ()))
        gt = self._ground_truth(data_sample) if draw_gt else None
        pred = self._predictions(data_sample, pred_score_thr) \
            if draw_pred else None
        num_labels = max([len(classes)] + [int(i[1].max()) + 1 for i in
                                           (gt, pred)
                                           if i is not None and len(i[1])])
        colours = self._palette(num_labels)
        names = classes or [f'class {i}' for i in range(num_labels)]

        scale = max(1.0, self.min_width / image.shape[1])
        if scale > 1:
            image = cv2.resize(image, None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_LINEAR)
            cam2img = np.diag([scale, scale, 1.0]) @ cam2img
        panels = []
        if gt is not None or pred is None:
            boxes, labels = gt if gt is not None else (np.zeros((0, 7)),
                                                       np.zeros(0, int))
            panels.append(self._draw_image_panel(
                image, cam2img, boxes, labels, colours,
                f'ground truth ({len(boxes)})'))
        if pred is not None:
            panels.append(self._draw_image_panel(
                image, cam2img, pred[0], pred[1], colours,
                f'predictions > {pred_score_thr:.2f} ({len(pred[0])})',
                scores=pred[2]))
        column = np.concatenate(panels, 0)
        height = max(column.shape[0], self.min_height)
        if height > column.shape[0]:
            column = np.concatenate([column, np.full(
                (height - column.shape[0], ) + column.shape[1:], 32,
                np.uint8)], 0)
        bev = self._draw_bev_panel(height, cam2img, image.shape[1], gt, pred,
                                   colours, names)
        drawn = np.concatenate([column, bev], 1)
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)
