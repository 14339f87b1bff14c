"""tools/train.py and tools/test.py end to end on the tiny config."""
import glob
import os.path as osp
import pickle

import pytest

from ._helpers import TINY_CONFIG, data_options, run_tool, scalars

pytestmark = pytest.mark.slow  # end-to-end runs of the tools


@pytest.fixture(scope='module')
def trained(coco_shapes_root, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('train'))
    run_tool(['tools/train.py', TINY_CONFIG, '--work-dir', work_dir,
              '--cfg-options'] + data_options(coco_shapes_root))
    return work_dir


def test_train_writes_checkpoints_logs_and_val_metrics(trained):
    assert osp.isfile(osp.join(trained, 'iter_6.pth'))
    records = scalars(trained)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 6
    assert any('coco/bbox_mAP_50' in r for r in records)


def test_test_tool_prints_coco_table_dumps_and_draws(trained,
                                                     coco_shapes_root,
                                                     tmp_path):
    out = str(tmp_path / 'results.pkl')
    show_dir = str(tmp_path / 'pictures')
    result = run_tool(['tools/test.py', TINY_CONFIG,
                       osp.join(trained, 'iter_6.pth'), '--work-dir',
                       str(tmp_path), '--out', out, '--show-dir', show_dir,
                       '--cfg-options'] + data_options(coco_shapes_root))
    log = result.stdout + result.stderr
    assert 'Average Precision  (AP) @[ IoU=0.50      |' in log
    assert 'coco/bbox_mAP_50' in log
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8
    assert {'pred_instances', 'img_id'} <= set(predictions[0])
    pictures = glob.glob(osp.join(show_dir, '*.jpg'))
    assert len(pictures) == 8


def test_test_tool_missing_checkpoint_is_clear(tmp_path):
    result = run_tool(['tools/test.py', TINY_CONFIG,
                       str(tmp_path / 'nope.pth')], check=False)
    assert result.returncode != 0
    assert 'checkpoint not found' in result.stderr


def test_missing_data_root_error_reaches_the_user(tmp_path):
    result = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir',
                       str(tmp_path), '--cfg-options'] +
                      data_options(str(tmp_path / 'absent')), check=False)
    assert result.returncode != 0
    assert 'make_synthetic.py coco' in result.stderr
