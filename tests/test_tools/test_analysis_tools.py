"""browse_dataset draws ground truth; analyze_logs draws curves."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from ._helpers import TINY_CONFIG, data_options, run_tool


def test_browse_dataset_draws_ground_truth_boxes(coco_shapes_root, tmp_path):
    out = str(tmp_path / 'gt')
    run_tool(['tools/misc/browse_dataset.py', TINY_CONFIG, '--output-dir',
              out, '--num', '3', '--cfg-options'] +
             data_options(coco_shapes_root))
    pictures = sorted(p for p in __import__('os').listdir(out))
    assert len(pictures) == 3
    drawn = np.array(Image.open(osp.join(out, pictures[0])))
    assert drawn.shape[2] == 3 and drawn.shape[:2] == (64, 64)


def test_analyze_logs_plots_every_key(tmp_path):
    from tools.analysis_tools.analyze_logs import load_scalars, plot_curve
    log = tmp_path / 'scalars.json'
    log.write_text('\n'.join(json.dumps({'loss': 2.0 / (i + 1), 'step': i,
                                         'lr': 1e-4})
                             for i in range(1, 11)) +
                   '\n' + json.dumps({'coco/bbox_mAP': 0.3, 'step': 10}))
    series = load_scalars(str(log))
    assert [s for s, _ in series['loss']] == list(range(1, 11))
    out = plot_curve([str(log)], ['loss', 'coco/bbox_mAP'],
                     str(tmp_path / 'curves.png'))
    image = np.array(Image.open(out))
    assert image.shape[0] > 400  # two panels
    with pytest.raises(KeyError, match='available keys'):
        plot_curve([str(log)], ['nonexistent'], str(tmp_path / 'x.png'))
