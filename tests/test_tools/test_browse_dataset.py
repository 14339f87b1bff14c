"""browse_dataset draws KITTI ground truth: projected 3D boxes on the
transformed input (through its cam2img) and a bird's-eye view."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from ._helpers import run_tool

CONFIG = """_base_ = ['{repo}/configs/_base_/datasets/kitti_mono3d.py',
          '{repo}/configs/_base_/default_runtime_kitti.py']
_data = dict(data_root='{root}/',
             data_prefix=dict(img='image_2', label='label_2', calib='calib'),
             metainfo=dict(classes=('Pedestrian', 'Cyclist', 'Car')))
train_dataloader = dict(dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = val_dataloader
"""


@pytest.mark.slow
def test_browse_dataset_draws_kitti_3d_boxes_and_top_view(
        repo_root, kitti_shapes_root, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, DefaultScope

    from vitdense.utils import register_all_modules
    from vitdense.structures import box3d_corners
    from vitdense.visualization import project_box_edges
    config = tmp_path / 'kitti_browse.py'
    config.write_text(CONFIG.format(repo=repo_root, root=kitti_shapes_root))
    out = str(tmp_path / 'gt')
    run_tool(['tools/misc/browse_dataset.py', str(config), '--output-dir',
              out, '--split', 'val', '--num', '2'])
    assert sorted(os.listdir(out)) == ['000006.png', '000007.png']

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(config))
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.val_dataloader.dataset)
    drawn_boxes = 0
    for index in range(2):
        item = dataset[index]
        sample = item['data_samples']
        image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]
        height, width = image.shape[:2]
        assert (height, width) == (384, 1280)
        drawn = np.array(Image.open(osp.join(out, sample.sample_id +
                                             '.png')).convert('RGB'))
        # the 1280x384 input (no enlargement) over a grey strip up to the
        # top view's 480 pixels, the top view on the right
        assert drawn.shape[0] == 480 and drawn.shape[1] > width + 400
        boxes = sample.gt_instances_3d.bboxes_3d.numpy()
        segments, _ = project_box_edges(box3d_corners(boxes),
                                        sample.cam2img, (height, width))
        points = [(int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0)))
                  for (x0, y0), (x1, y1) in segments
                  for t in np.linspace(0.25, 0.75, 3)]
        rows, cols = np.array(points).T
        diff = np.abs(drawn[rows, cols].astype(int) -
                      image[rows, cols].astype(int)).sum(-1)
        assert (diff > 40).mean() > 0.8
        drawn_boxes += len(boxes)
    assert drawn_boxes > 0
