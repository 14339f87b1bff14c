"""KittiMonoVisualizer draws projected 3D boxes and a bird's-eye view, for
browse_dataset (transformed input, ``cam2img``) and for mmdet's
DetVisualizationHook in ``tools/test.py --show-dir`` (file image,
``ori_cam2img``)."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from vitdense.datasets.synthetic import KITTI_P2
from vitdense.structures import box3d_corners, project_to_image
from vitdense.visualization import KittiMonoVisualizer, project_box_edges

CLASSES = ('Pedestrian', 'Cyclist', 'Car')
PALETTE = [(0, 200, 0), (0, 0, 200), (200, 0, 0)]
P2 = KITTI_P2 * np.array([[0.25], [0.25], [1]])  # the embedded data's P2
SHAPE = (94, 310)
# a car 12 m ahead seen from its front-left; a pedestrian further right
BOXES = np.array([[-1.0, 1.65, 12.0, 3.9, 1.5, 1.6, -0.6],
                  [3.0, 1.65, 20.0, 0.8, 1.8, 0.6, 1.2]])


def _visualizer(name, **kwargs):
    visualizer = KittiMonoVisualizer.get_instance(name, **kwargs)
    visualizer.dataset_meta = dict(classes=CLASSES, palette=PALETTE)
    return visualizer


def _sample(gt=True, pred=True, **metainfo):
    meta = dict(img_path='000000.png', ori_shape=SHAPE, img_shape=SHAPE,
                cam2img=P2, ori_cam2img=P2)
    meta.update(metainfo)
    sample = DetDataSample(metainfo=meta)
    if gt:
        sample.gt_instances_3d = InstanceData(
            bboxes_3d=torch.tensor(BOXES, dtype=torch.float32),
            labels_3d=torch.tensor([2, 0]))
    if pred:
        sample.pred_instances_3d = InstanceData(
            bboxes_3d=torch.tensor(BOXES, dtype=torch.float32),
            labels_3d=torch.tensor([2, 0]),
            scores_3d=torch.tensor([0.9, 0.1]))
    return sample


def _edge_pixels(boxes, cam2img, shape, scale):
    """Pixels (row, col) of the projected box edges in a picture enlarged by
    ``scale``, sampled along each visible edge away from its ends."""
    segments, _ = project_box_edges(box3d_corners(boxes), cam2img, shape)
    points = []
    for (x0, y0), (x1, y1) in segments * scale:
        for t in np.linspace(0.2, 0.8, 5):
            points.append((int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))))
    return np.array(points)


def _changed(drawn, image, points, scale):
    """Fraction of ``points`` where the picture differs from the enlarged
    image by more than 40 (sum over channels)."""
    big = cv2.resize(image, None, fx=scale, fy=scale,
                     interpolation=cv2.INTER_LINEAR)
    rows, cols = points[:, 0], points[:, 1]
    diff = np.abs(drawn[rows, cols].astype(int) -
                  big[rows, cols].astype(int)).sum(-1)
    return (diff > 40).mean()


def test_edges_crossing_the_camera_plane_are_cut_and_behind_dropped():
    behind = [0.0, 1.65, -6.0, 3.9, 1.5, 1.6, 0.0]
    straddling = [0.0, 1.65, 1.0, 3.9, 1.5, 1.6, 0.0]  # z from -0.95 to 2.95
    segments, owner = project_box_edges(
        box3d_corners(np.array([behind, straddling])), P2, SHAPE)
    assert set(owner.tolist()) == {1}
    assert np.isfinite(segments).all()
    assert (segments[..., 0] >= 0).all() and \
        (segments[..., 0] <= SHAPE[1]).all()
    assert (segments[..., 1] >= 0).all() and \
        (segments[..., 1] <= SHAPE[0]).all()
    # an edge fully in front is the plain projection
    inside = np.array([[0.0, 1.65, 15.0, 3.9, 1.5, 1.6, 0.3]])
    segments, _ = project_box_edges(box3d_corners(inside), P2, SHAPE)
    pixels = project_to_image(box3d_corners(inside)[0], P2)
    np.testing.assert_allclose(segments[0], pixels[[0, 1]], atol=1e-9)


def test_ground_truth_and_predictions_are_drawn_on_their_boxes(tmp_path):
    image = np.full(SHAPE + (3,), 128, np.uint8)
    out = str(tmp_path / 'x.png')
    _visualizer('kitti_vis_draw').add_datasample('x', image, _sample(),
                                                 out_file=out)
    drawn = cv2.imread(out)[..., ::-1]
    scale = 960 / 310
    panel = int(round(SHAPE[0] * scale))
    width = int(round(SHAPE[1] * scale))
    # two image panels (ground truth, predictions) and a square-ish top view
    assert drawn.shape[0] == max(2 * panel, 480)
    assert drawn.shape[1] > width + 400
    gt_points = _edge_pixels(BOXES, P2, SHAPE, scale)
    assert _changed(drawn[:panel, :width], image, gt_points, scale) > 0.9
    car = _edge_pixels(BOXES[:1], P2, SHAPE, scale)
    pedestrian = _edge_pixels(BOXES[1:], P2, SHAPE, scale)
    prediction_panel = drawn[panel:2 * panel, :width]
    assert _changed(prediction_panel, image, car, scale) > 0.9
    # the pedestrian's score 0.1 is under the threshold 0.3: not drawn
    assert _changed(prediction_panel, image, pedestrian, scale) < 0.2
    # the car edges are in the class colour (red) on the grey image
    rows, cols = car[:, 0], car[:, 1]
    red = prediction_panel[rows, cols].astype(int)
    assert ((red[:, 0] - red[:, 2]) > 80).mean() > 0.5
    # top view: the car's footprint centre is red, far from it grey
    bev = drawn[:, width:]
    x_min, x_max, z_min, z_max = -25, 25, -2, 50
    ppm = drawn.shape[0] / (z_max - z_min)
    u, v = int((BOXES[0, 0] - x_min) * ppm), int((z_max - BOXES[0, 2]) * ppm)
    patch = bev[v - 2:v + 3, u - 2:u + 3].reshape(-1, 3).astype(int)
    assert (patch[:, 0] - patch[:, 2] > 40).any()
    empty = bev[int((z_max - 35) * ppm), int((-12 - x_min) * ppm)]
    assert abs(int(empty[0]) - int(empty[2])) < 10


def test_projection_follows_the_image_that_is_drawn(tmp_path):
    """The file image takes ori_cam2img, the transformed input cam2img
    (here twice as large and shifted by 7 pixels)."""
    affine = np.array([[2, 0, 7], [0, 2, 0], [0, 0, 1.0]])
    sample = _sample(pred=False, img_shape=(188, 620), cam2img=affine @ P2)
    visualizer = _visualizer('kitti_vis_projection', min_width=0,
                             min_height=0)
    for shape, cam2img in ((SHAPE, P2), ((188, 620), affine @ P2)):
        image = np.full(shape + (3,), 128, np.uint8)
        out = str(tmp_path / f'{shape[0]}.png')
        visualizer.add_datasample('x', image, sample, out_file=out)
        drawn = cv2.imread(out)[..., ::-1][:shape[0], :shape[1]]
        points = _edge_pixels(BOXES, cam2img, shape, 1.0)
        assert _changed(drawn, image, points, 1.0) > 0.9
    with pytest.raises(ValueError, match=r'shape \(50, 50\).*ori_shape'):
        visualizer.add_datasample('x', np.zeros((50, 50, 3), np.uint8),
                                  sample)


def test_ground_truth_from_eval_ann_info_when_not_loaded(tmp_path):
    """A test pipeline without annotations still has the label file in
    eval_ann_info (official format, dimensions l, h, w); DontCare and other
    types are skipped."""
    sample = _sample(gt=False, pred=False)
    sample.eval_ann_info = {
        'name': np.array(['Car', 'DontCare', 'Van']),
        'location': np.array([BOXES[0, :3], [-1000, -1000, -1000],
                              [4, 1.65, 30]]),
        'dimensions': np.array([BOXES[0, 3:6], [-1, -1, -1], [4, 2, 2]]),
        'rotation_y': np.array([BOXES[0, 6], -10, 0])}
    visualizer = _visualizer('kitti_vis_eval_ann')
    boxes, labels = visualizer._ground_truth(sample)
    np.testing.assert_allclose(boxes, BOXES[:1])
    assert labels.tolist() == [2]
    image = np.full(SHAPE + (3,), 128, np.uint8)
    out = str(tmp_path / 'x.png')
    visualizer.add_datasample('x', image, sample, out_file=out)
    scale = 960 / 310
    drawn = cv2.imread(out)[..., ::-1]
    assert _changed(drawn, image, _edge_pixels(BOXES[:1], P2, SHAPE, scale),
                    scale) > 0.9


def test_det_visualization_hook_writes_the_test_picture(tmp_path):
    """The picture path of ``tools/test.py --show-dir``: mmdet's hook reads
    the file image (RGB) and hands the visualizer the output sample; the PNG
    under work_dir/timestamp/show_dir has the predicted boxes drawn."""
    from mmdet.engine.hooks import DetVisualizationHook
    image = np.random.default_rng(0).integers(60, 200, SHAPE + (3,),
                                              dtype=np.uint8)
    img_path = str(tmp_path / '000007.png')
    cv2.imwrite(img_path, image[..., ::-1])
    visualizer = _visualizer('kitti_vis_hook')
    hook = DetVisualizationHook(draw=True, test_out_dir='show')
    assert hook._visualizer is visualizer

    class Runner:
        work_dir = str(tmp_path)
        timestamp = '20260101_000000'

    sample = _sample(gt=False, img_path=img_path,
                     img_shape=(384, 1280),
                     cam2img=np.diag([4.1, 4.1, 1.0]) @ P2)
    hook.after_test_iter(Runner(), 0, {}, [sample])
    out = osp.join(str(tmp_path), Runner.timestamp, 'show', '000007.png')
    drawn = cv2.imread(out)[..., ::-1]
    scale = 960 / 310
    width = int(round(SHAPE[1] * scale))
    panel = drawn[:int(round(SHAPE[0] * scale)), :width]
    car = _edge_pixels(BOXES[:1], P2, SHAPE, scale)
    assert _changed(panel, image, car, scale) > 0.9


def test_samples_without_3d_fields_are_drawn_as_mmdet_does(tmp_path):
    image = np.full((40, 50, 3), 100, np.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(40, 50)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[5.0, 5.0, 30.0, 30.0]]),
        labels=torch.tensor([2]))
    out = str(tmp_path / 'x.png')
    _visualizer('kitti_vis_2d').add_datasample('x', image, sample,
                                               draw_pred=False, out_file=out)
    drawn = cv2.imread(out)[..., ::-1]
    assert drawn.shape == (40, 50, 3)
    assert (drawn[5:7, 10:25] != 100).any()


def test_visualizer_builds_from_a_config_in_the_mmdet_scope(tmp_path):
    from mmengine.registry import VISUALIZERS, DefaultScope

    from vitdense.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        visualizer = VISUALIZERS.build(dict(
            type='KittiMonoVisualizer', name='kitti_vis_cfg',
            vis_backends=[dict(type='LocalVisBackend')],
            save_dir=str(tmp_path),
            bev_range=(-10, 10, 0, 30)))
    assert isinstance(visualizer, KittiMonoVisualizer)
    assert visualizer.bev_range == (-10.0, 10.0, 0.0, 30.0)
    with pytest.raises(ValueError, match='bev_range'):
        KittiMonoVisualizer(name='kitti_vis_bad', bev_range=(5, -5, 0, 30))


def test_frames_without_objects_draw_the_image_and_top_view(tmp_path):
    sample = _sample(gt=False, pred=False)
    sample.gt_instances_3d = InstanceData(
        bboxes_3d=torch.zeros(0, 7), labels_3d=torch.zeros(0, dtype=int))
    sample.pred_instances_3d = InstanceData(
        bboxes_3d=torch.zeros(0, 7), labels_3d=torch.zeros(0, dtype=int),
        scores_3d=torch.zeros(0))
    image = np.full(SHAPE + (3,), 128, np.uint8)
    out = str(tmp_path / 'x.png')
    _visualizer('kitti_vis_empty').add_datasample('x', image, sample,
                                                  out_file=out)
    drawn = cv2.imread(out)[..., ::-1]
    scale = 960 / 310
    panel = int(round(SHAPE[0] * scale))
    # away from the panel titles the image is unchanged
    big = cv2.resize(image, None, fx=scale, fy=scale)
    np.testing.assert_array_equal(drawn[40:panel, 300:960],
                                  big[40:, 300:960])
    assert drawn.shape[0] == 2 * panel
