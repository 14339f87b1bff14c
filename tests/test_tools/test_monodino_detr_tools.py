"""The tiny MonoDINO-DETR config through the tools on the embedded KITTI
data: ``tools/train.py`` for 2 iterations, then ``tools/test.py`` on its
checkpoint draws one KITTI picture per frame (``--show-dir``) and writes the
KITTI submission (one 16-field label file per frame) that
``read_kitti_label_dir`` + ``kitti_eval`` score exactly as the metric did;
``format_only=True`` writes the same files without evaluating."""
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from ._helpers import run_tool

CONFIG = 'configs/monodino_detr/monodino-detr_vit-nano_1xb4-kitti-shapes.py'


def _data_options(root: str) -> list:
    return [f'{split}_dataloader.dataset.data_root={root}/'
            for split in ('train', 'val', 'test')] + [
                'test_dataloader.num_workers=0',
                'test_dataloader.persistent_workers=False',
                # an untrained model: keep every top-20 detection
                'model.criterion.test_cfg.score_thr=0.0'
            ]


@pytest.fixture(scope='module')
def checkpoint(kitti_shapes_root, tmp_path_factory) -> str:
    work_dir = str(tmp_path_factory.mktemp('monodino_train'))
    run_tool(['tools/train.py', CONFIG, '--work-dir', work_dir,
              '--cfg-options'] + _data_options(kitti_shapes_root) + [
                  'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
                  'train_cfg.max_iters=2',
                  'default_hooks.checkpoint.interval=2',
                  'train_dataloader.batch_size=2',
                  'train_dataloader.num_workers=0'
              ])
    return osp.join(work_dir, 'iter_2.pth')


def _val_ids(root: str) -> list:
    with open(osp.join(root, 'ImageSets', 'val.txt')) as f:
        return [line.strip() for line in f if line.strip()]


def _test_metrics(work_dir: str) -> dict:
    """The metrics tools/test.py logged (``{timestamp}/{timestamp}.json``)."""
    paths = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return json.load(f)


@pytest.mark.slow
def test_test_tool_draws_kitti_pictures_and_writes_a_scored_submission(
        checkpoint, kitti_shapes_root, tmp_path):
    from vitdense.datasets.kitti_mono import (parse_kitti_calib,
                                              parse_kitti_label)
    from vitdense.evaluation.functional import (kitti_eval,
                                                read_kitti_label_dir)
    from vitdense.structures import box3d_corners
    from vitdense.visualization import project_box_edges
    work_dir, show_dir = str(tmp_path / 'test'), str(tmp_path / 'pictures')
    submission = str(tmp_path / 'submission')
    run_tool(['tools/test.py', CONFIG, checkpoint, '--work-dir', work_dir,
              '--show-dir', show_dir, '--cfg-options'] +
             _data_options(kitti_shapes_root) +
             [f'test_evaluator.outfile_prefix={submission}'])
    ids = _val_ids(kitti_shapes_root)

    # one picture per frame: the ground truth drawn on the enlarged frame
    assert sorted(os.listdir(show_dir)) == [f'{i}.png' for i in ids]
    drawn_boxes = 0
    for sample_id in ids:
        frame = cv2.imread(
            osp.join(kitti_shapes_root, 'image_2', sample_id + '.png'))
        picture = cv2.imread(osp.join(show_dir, sample_id + '.png'))
        scale = 960 / frame.shape[1]  # the visualizer's min_width
        frame = cv2.resize(frame, None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_LINEAR)
        height, width = frame.shape[:2]
        assert picture.shape[0] >= 2 * height  # ground truth, predictions
        assert picture.shape[1] > width  # + the top view
        objects = [
            o for o in parse_kitti_label(
                osp.join(kitti_shapes_root, 'label_2', sample_id + '.txt'))
            if o['type'] in ('Pedestrian', 'Cyclist', 'Car')
        ]
        if not objects:
            continue
        boxes = np.array([[*o['location'], o['dimensions'][2],
                           *o['dimensions'][:2], o['rotation_y']]
                          for o in objects])  # x, y, z, l, h, w, ry
        P2 = parse_kitti_calib(
            osp.join(kitti_shapes_root, 'calib', sample_id + '.txt'))['P2']
        segments, _ = project_box_edges(box3d_corners(boxes),
                                        np.diag([scale, scale, 1.]) @ P2,
                                        (height, width))
        points = [(int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0)))
                  for (x0, y0), (x1, y1) in segments
                  for t in np.linspace(0.25, 0.75, 3)]
        rows, cols = np.array(points).T
        diff = np.abs(picture[rows, cols].astype(int) -
                      frame[rows, cols].astype(int)).sum(-1)
        assert (diff > 40).mean() > 0.8
        drawn_boxes += len(boxes)
    assert drawn_boxes > 0

    # the submission: one 16-field file per frame, 20 detections each
    assert sorted(os.listdir(submission)) == [f'{i}.txt' for i in ids]
    for sample_id in ids:
        with open(osp.join(submission, sample_id + '.txt')) as f:
            lines = f.read().splitlines()
        assert len(lines) == 20
        assert {len(line.split()) for line in lines} == {16}
    # ... scored from the files as the metric scored the predictions
    metrics = _test_metrics(work_dir)
    gt = read_kitti_label_dir(osp.join(kitti_shapes_root, 'label_2'), ids)
    _, results = kitti_eval(gt, read_kitti_label_dir(submission, ids),
                            classes=('Pedestrian', 'Cyclist', 'Car'))
    assert len(results) == 3 * 4 * 3 * 2 * 2
    for key, value in results.items():
        assert metrics[f'kitti/{key}'] == pytest.approx(value, abs=1e-4), key

    # format_only: the same files, no evaluation
    format_dir = str(tmp_path / 'format_only')
    result = run_tool(['tools/test.py', CONFIG, checkpoint, '--work-dir',
                       str(tmp_path / 'format'), '--cfg-options'] +
                      _data_options(kitti_shapes_root) + [
                          'test_evaluator.format_only=True',
                          f'test_evaluator.outfile_prefix={format_dir}'
                      ])
    assert 'kitti/Car_3D_moderate_R40' not in result.stdout + result.stderr
    for sample_id in ids:
        with open(osp.join(format_dir, sample_id + '.txt')) as f, open(
                osp.join(submission, sample_id + '.txt')) as g:
            assert f.read() == g.read()
