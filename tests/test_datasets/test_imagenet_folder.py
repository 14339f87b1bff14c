"""ImageNetFolderDataset reads mmpretrain's ImageNet layout (annotation lists
or class folders) with errors naming file and line; PackClsInputs packs a
classification DetDataSample."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from vitdense.datasets import ImageNetFolderDataset
from vitdense.datasets.synthetic import (IMAGENET_SHAPES_CLASSES,
                                         make_imagenet_shapes)
from vitdense.datasets.transforms import PackClsInputs
from vitdense.registry import DATASETS, TRANSFORMS

BASE_CONFIG = 'configs/_base_/datasets/imagenet_shapes_classification.py'


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('imagenet_shapes'))
    return make_imagenet_shapes(root, num_train=20, num_val=10, seed=3)


@pytest.fixture
def mmdet_scope():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _lines(root, split):
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        return [line.split() for line in f]


def _dataset(root, split='train', **kwargs):
    kwargs.setdefault('classes', 'meta/classes.txt')
    return ImageNetFolderDataset(data_root=root,
                                 ann_file=kwargs.pop('ann_file',
                                                     f'meta/{split}.txt'),
                                 data_prefix=dict(img_path=split), **kwargs)


def _copy_with_train_list(tmp_path, root, text):
    """A copy of the meta folder whose train.txt is ``text`` (images stay
    in ``root``)."""
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'train.txt').write_text(text)
    (tmp_path / 'meta' / 'classes.txt').write_text(
        open(osp.join(root, 'meta', 'classes.txt')).read())
    return dict(data_root=str(tmp_path), ann_file='meta/train.txt',
                classes='meta/classes.txt',
                data_prefix=dict(img_path=osp.join(root, 'train')))


def test_imagenet_shapes_layout_and_balanced_labels(shapes_root):
    with open(osp.join(shapes_root, 'meta', 'classes.txt')) as f:
        assert tuple(f.read().split()) == IMAGENET_SHAPES_CLASSES
    assert IMAGENET_SHAPES_CLASSES[:3] == ('circle', 'square', 'triangle')
    assert len(IMAGENET_SHAPES_CLASSES) == 10
    train, val = _lines(shapes_root, 'train'), _lines(shapes_root, 'val')
    assert len(train) == 20 and len(val) == 10
    for path, label in train:  # class folders named after the label
        folder, name = path.split('/')
        assert folder == f's{int(label):04d}_' \
            f'{IMAGENET_SHAPES_CLASSES[int(label)]}'
        assert name.startswith(folder) and name.endswith('.JPEG')
        assert osp.isfile(osp.join(shapes_root, 'train', path))
    for path, _ in val:  # flat, as ImageNet val
        assert '/' not in path
        assert osp.isfile(osp.join(shapes_root, 'val', path))
    assert np.bincount([int(l) for _, l in train]).tolist() == [2] * 10
    assert np.bincount([int(l) for _, l in val]).tolist() == [1] * 10
    # random order, not sorted by class
    assert [int(l) for _, l in val] != sorted(int(l) for _, l in val)


def test_dataset_loads_annotation_lists(shapes_root):
    train = _dataset(shapes_root)
    assert len(train) == 20
    assert train.metainfo['classes'] == IMAGENET_SHAPES_CLASSES
    for info, (path, label) in zip(train, _lines(shapes_root, 'train')):
        assert info['img_path'] == osp.join(shapes_root, 'train', path)
        assert info['gt_label'] == int(label)
        assert isinstance(info['gt_label'], int)
        assert info['task'] == 'classification'
    val = _dataset(shapes_root, 'val',
                   metainfo=dict(classes=IMAGENET_SHAPES_CLASSES))
    assert [i['gt_label'] for i in val] == \
        [int(l) for _, l in _lines(shapes_root, 'val')]


def test_dataset_folder_scan_matches_the_annotation_list(shapes_root):
    scan = _dataset(shapes_root, ann_file='', classes=None)
    expected = {osp.join(shapes_root, 'train', path): int(label)
                for path, label in _lines(shapes_root, 'train')}
    assert {i['img_path']: i['gt_label'] for i in scan} == expected
    assert scan.metainfo['classes'] == tuple(
        f's{i:04d}_{n}' for i, n in enumerate(IMAGENET_SHAPES_CLASSES))
    named = _dataset(shapes_root, ann_file='')
    assert named.metainfo['classes'] == IMAGENET_SHAPES_CLASSES
    with pytest.raises(ValueError, match='10 class folders but 3 classes'):
        _dataset(shapes_root, ann_file='', classes=('a', 'b', 'c'))


@pytest.mark.parametrize('text,error,message', [
    ('s0000_circle/x.JPEG 0\nno_label_here\n', ValueError,
     r'train.txt:2: expected "<relative path> <label>"'),
    ('s0000_circle/x.JPEG zero\n', ValueError,
     r"train.txt:1: label 'zero' is not an integer"),
    ('\ns0000_circle/x.JPEG 10\n', ValueError,
     r'train.txt:2: label 10 is outside 0..9 \(10 classes\)'),
    ('s0000_circle/x.JPEG -1\n', ValueError, r'train.txt:1: label -1'),
    ('s0000_circle/missing.JPEG 0\n', FileNotFoundError,
     r'train.txt:1: image .*missing.JPEG does not exist'),
    ('\n\n', ValueError, r'no images in .*train.txt'),
])
def test_dataset_errors_name_file_and_line(shapes_root, tmp_path, text,
                                           error, message):
    first = _lines(shapes_root, 'train')[0]
    text = text.replace('s0000_circle/x.JPEG', first[0])
    with pytest.raises(error, match=message):
        ImageNetFolderDataset(**_copy_with_train_list(tmp_path, shapes_root,
                                                      text))


def test_dataset_errors_for_missing_files_and_classes(shapes_root, tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"ann_file '.*nothere.txt' does not exist.*"
                       'make_synthetic.py imagenet'):
        _dataset(shapes_root, ann_file='meta/nothere.txt')
    with pytest.raises(FileNotFoundError,
                       match=r"classes file '.*names.txt' does not exist"):
        _dataset(shapes_root, classes='meta/names.txt')
    with pytest.raises(ValueError, match='train.txt gives labels but no '
                       'class names'):
        _dataset(shapes_root, classes=None)
    with pytest.raises(ValueError, match='differ'):
        _dataset(shapes_root, metainfo=dict(classes=('a', 'b')))


def test_pipeline_packs_label_task_and_image(shapes_root, mmdet_scope):
    dataset = DATASETS.build(dict(
        type='ImageNetFolderDataset', data_root=shapes_root,
        ann_file='meta/val.txt', classes='meta/classes.txt',
        data_prefix=dict(img_path='val'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='Resize', scale=(48, 40), keep_ratio=False),
                  dict(type='PackClsInputs')]))
    labels = [int(l) for _, l in _lines(shapes_root, 'val')]
    for index in (0, 3):
        packed = dataset[index]
        assert packed['inputs'].shape == (3, 40, 48)
        assert packed['inputs'].dtype == torch.uint8
        sample = packed['data_samples']
        assert sample.gt_label.dtype == torch.long
        assert sample.gt_label.tolist() == [labels[index]]
        assert sample.task == 'classification'
        assert sample.ori_shape == (128, 128)
        assert sample.img_shape == (40, 48)
        assert sample.img_path == dataset.get_data_info(index)['img_path']


def test_pack_cls_inputs_converts_layout_and_labels():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    pack = TRANSFORMS.build(dict(type='PackClsInputs'))
    for img in (image, image[:, ::-1]):  # contiguous and not
        packed = pack(dict(img=img, gt_label=np.int64(4), img_path='a.jpg'))
        assert packed['inputs'].is_contiguous()
        assert torch.equal(packed['inputs'],
                           torch.from_numpy(img.copy()).permute(2, 0, 1))
        assert packed['data_samples'].gt_label.tolist() == [4]
        assert packed['data_samples'].metainfo == dict(
            img_path='a.jpg', task='classification')
    packed = PackClsInputs(meta_keys=('task', ))(
        dict(img=image[..., 0], task='detection'))
    assert packed['inputs'].shape == (1, 2, 3)
    assert 'gt_label' not in packed['data_samples']
    assert packed['data_samples'].task == 'detection'
    with pytest.raises(ValueError, match='one class index'):
        pack(dict(img=image, gt_label=[1, 2]))


def test_base_config_builds_classification_loaders(shapes_root, repo_root,
                                                   mmdet_scope):
    cfg = Config.fromfile(osp.join(repo_root, BASE_CONFIG))
    assert 'train_dataloader' not in cfg and 'val_evaluator' not in cfg
    assert cfg.cls_data_root == 'data/imagenet_shapes/'
    assert cfg.cls_train_dataloader.sampler == dict(type='InfiniteSampler',
                                                    shuffle=True)
    for key, count in (('cls_train_dataloader', 20),
                       ('cls_val_dataloader', 10)):
        cfg[key].dataset.data_root = shapes_root
        loader = Runner.build_dataloader(cfg[key], seed=0)
        assert len(loader.dataset) == count
        batch = next(iter(loader))
        assert len(batch['inputs']) == min(16, count)
        assert batch['inputs'][0].shape == (3, 128, 128)
        assert all(s.task == 'classification' and s.gt_label.shape == (1, )
                   for s in batch['data_samples'])
    from vitdense.registry import METRICS
    metric = METRICS.build(cfg.cls_val_evaluator)
    assert metric.topk == (1, 5) and metric.prefix == 'accuracy'
