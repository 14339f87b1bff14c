"""Checkpoints of 2 training iterations of the Relation-DETR demo config
and a tiny UperNet config (tools/train.py), with tools/test.py's
predictions for them (``--out``, batch 1), shared by the inference and demo
tests."""
import glob
import os.path as osp
import sys

import pytest

# tests/ holds the test_tools package (as pytest imports it)
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from test_tools._helpers import data_options, run_tool  # noqa: E402

DET_CONFIG = 'configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py'
SEG_CONFIG = 'configs/vit_comer/upernet_vit-comer-nano_1xb2-shapes.py'
TRAIN_OPTIONS = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
                 'train_cfg.max_iters=2',
                 'default_hooks.checkpoint.interval=2',
                 'train_dataloader.batch_size=2',
                 'train_dataloader.num_workers=0',
                 'train_dataloader.persistent_workers=False']


def _train_and_test(config, data, work_dir):
    """The config, the checkpoint and tools/test.py's pickled predictions."""
    run_tool(['tools/train.py', config, '--work-dir', work_dir,
              '--cfg-options'] + data + TRAIN_OPTIONS)
    checkpoint, = glob.glob(osp.join(work_dir, '*.pth'))
    out = osp.join(work_dir, 'results.pkl')
    run_tool(['tools/test.py', config, checkpoint, '--work-dir', work_dir,
              '--out', out, '--cfg-options', 'test_dataloader.batch_size=1']
             + data)
    return dict(config=config, checkpoint=checkpoint, results=out)


@pytest.fixture(scope='session')
def det_run(coco_shapes_root, tmp_path_factory):
    return _train_and_test(DET_CONFIG, data_options(coco_shapes_root),
                           str(tmp_path_factory.mktemp('det_run')))


@pytest.fixture(scope='session')
def seg_run(ade20k_shapes_root, tmp_path_factory):
    data = [f'{split}_dataloader.dataset.data_root={ade20k_shapes_root}'
            for split in ('train', 'test')]
    return _train_and_test(SEG_CONFIG, data,
                           str(tmp_path_factory.mktemp('seg_run')))
