"""Bad ADE20K-format label maps fail with the label file named, through the
shipped ade20k_shapes pipelines; an all-ignore label set warns."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

NAME = 'ADE_val_00000001'


@pytest.fixture(autouse=True)
def mmseg_scope():
    from mmengine.registry import DefaultScope
    from mmseg.utils import register_all_modules
    import vitdense.datasets  # noqa: F401
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


@pytest.fixture(scope='module')
def cfg(repo_root):
    from mmengine.config import Config
    return Config.fromfile(osp.join(repo_root, 'configs', '_base_',
                                    'datasets', 'ade20k_shapes.py'))


@pytest.fixture
def ade(tmp_path):
    """One 24x32 image and its label; returns (root, label path)."""
    root = tmp_path / 'ade'
    (root / 'images' / 'validation').mkdir(parents=True)
    (root / 'annotations' / 'validation').mkdir(parents=True)
    cv2.imwrite(str(root / 'images' / 'validation' / f'{NAME}.jpg'),
                np.full((24, 32, 3), 128, np.uint8))
    label = root / 'annotations' / 'validation' / f'{NAME}.png'
    _write_label(label, np.tile(np.arange(1, 5, dtype=np.uint8), (24, 8)))
    return str(root), str(label)


def _write_label(path, array):
    assert cv2.imwrite(str(path), array)


def _sample(cfg, root, pipeline='test_pipeline'):
    from mmseg.registry import DATASETS
    dataset_cfg = dict(cfg.val_dataloader.dataset, data_root=root,
                       pipeline=cfg[pipeline])
    return DATASETS.build(dataset_cfg)[0]


@pytest.mark.parametrize('pipeline', ['train_pipeline', 'test_pipeline'])
def test_valid_label_loads(cfg, ade, pipeline):
    sample = _sample(cfg, ade[0], pipeline)
    values = sample['data_samples'].gt_sem_seg.data.unique().tolist()
    assert set(values) <= {0, 1, 2, 3, 255}


@pytest.mark.parametrize('pipeline', ['train_pipeline', 'test_pipeline'])
def test_label_of_another_size_names_the_file(cfg, ade, pipeline):
    _write_label(ade[1], np.ones((20, 30), np.uint8))
    with pytest.raises(ValueError) as info:
        _sample(cfg, ade[0], pipeline)
    message = str(info.value)
    assert f'{NAME}.png: the label map is 20x30 (height x width) but its ' \
        'image' in message and 'is 24x32' in message


def test_out_of_range_label_names_the_file(cfg, ade):
    label = np.ones((24, 32), np.uint8)
    label[0, :3] = (151, 200, 255)
    _write_label(ade[1], label)
    with pytest.raises(ValueError) as info:
        _sample(cfg, ade[0])
    assert f'{NAME}.png: class indices [150, 199] (PNG values [151, 200]) ' \
        'are outside 0..149 and are not ignore_index 255' in str(info.value)


def test_rgb_label_names_the_file(cfg, ade):
    _write_label(ade[1], np.ones((24, 32, 3), np.uint8))
    with pytest.raises(ValueError) as info:
        _sample(cfg, ade[0])
    assert f'{NAME}.png: the label image has shape (24, 32, 3); a label ' \
        'map has one channel' in str(info.value)


def test_truncated_label_names_the_file(cfg, ade):
    with open(ade[1], 'rb') as f:
        content = f.read()
    with open(ade[1], 'wb') as f:
        f.write(content[:len(content) // 2])
    with pytest.raises(ValueError) as info:
        _sample(cfg, ade[0])
    assert f'{NAME}.png: cannot decode the label image' in str(info.value)


def _metric(cfg):
    from mmseg.registry import METRICS
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    return metric


def _evaluate(metric, label):
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    metric.process({}, [dict(pred_sem_seg=dict(data=pred),
                             gt_sem_seg=dict(data=label))])
    return metric.evaluate(1)


def test_all_ignore_labels_warn_instead_of_silent_nan(cfg):
    with pytest.warns(UserWarning, match='the 1 evaluated label maps have no '
                      'pixel of any class .*ignore_index 255.*NaN'):
        metrics = _evaluate(_metric(cfg), torch.full((1, 4, 4), 255))
    assert np.isnan(metrics['mIoU'])


def test_labelled_pixels_give_mmseg_metrics_without_warning(cfg, recwarn):
    metrics = _evaluate(_metric(cfg), torch.zeros(1, 4, 4, dtype=torch.long))
    assert metrics['mIoU'] == 100.0
    assert not [w for w in recwarn if 'no pixel' in str(w.message)]
