"""KittiMonoDataset: the data contract (box order, classes, eval_ann_info),
unlabelled splits, errors that name the file, and the base config."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, DefaultScope

from vitdense.datasets import KittiMonoDataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
P2 = ('P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 '
      '0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 '
      '0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03')
CALIB = '\n'.join([
    'P0: 1 0 0 0 0 1 0 0 0 0 1 0', 'P1: 1 0 0 0 0 1 0 0 0 0 1 0', P2,
    'P3: 1 0 0 0 0 1 0 0 0 0 1 0', 'R0_rect: 1 0 0 0 1 0 0 0 1',
    'Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27',
    'Tr_imu_to_velo: 1 0 0 -0.81 0 1 0 0.32 0 0 1 -0.80']) + '\n'
LABELS = {
    '000000': [
        'Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 '
        '1.71 46.70 -1.59',
        'Van 0.00 1 1.20 100.00 150.00 200.00 220.00 2.20 1.90 5.00 -8.00 '
        '1.80 20.00 0.80',
        'DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 '
        '-1000 -1000 -10',
        'Pedestrian 0.50 2 0.30 10.00 20.00 30.00 80.00 1.80 0.60 0.80 5.00 '
        '1.60 10.00 0.50'],
    '000001': [],
}
TRAINING = dict(img='training/image_2', label='training/label_2',
                calib='training/calib')


@pytest.fixture
def kitti_root(tmp_path):
    """A two-frame KITTI folder in the real layout (training/, ImageSets)."""
    root = tmp_path / 'kitti'
    for sub in ('ImageSets', 'training/image_2', 'training/label_2',
                'training/calib'):
        os.makedirs(root / sub)
    (root / 'ImageSets' / 'train.txt').write_text('000000\n000001\n')
    for sample_id, lines in LABELS.items():
        cv2.imwrite(str(root / 'training/image_2' / f'{sample_id}.png'),
                    np.full((37, 124, 3), 90, np.uint8))
        (root / 'training/calib' / f'{sample_id}.txt').write_text(CALIB)
        (root / 'training/label_2' / f'{sample_id}.txt').write_text(
            ''.join(line + '\n' for line in lines))
    return str(root)


def test_instances_follow_the_data_contract(kitti_root):
    dataset = KittiMonoDataset(data_root=kitti_root, data_prefix=TRAINING)
    info = dataset.get_data_info(0)
    assert info['sample_id'] == '000000'
    assert info['img_path'] == osp.join(kitti_root, 'training/image_2',
                                        '000000.png')
    np.testing.assert_allclose(info['cam2img'][0],
                               [721.5377, 0, 609.5593, 44.85728])
    assert info['cam2img'].shape == (3, 4)
    assert set(info['calib']) >= {'P2', 'R0_rect', 'Tr_velo_to_cam'}
    car, van, dontcare, pedestrian = info['instances']
    # x, y, z, l, h, w, ry from the file's h w l x y z ry
    assert car['bbox_3d'] == [-0.65, 1.71, 46.70, 3.64, 1.65, 1.67, -1.59]
    assert car['bbox'] == [587.01, 173.33, 614.12, 200.12]
    assert (car['bbox_label'], car['ignore_flag'], car['name']) == \
        (2, 0, 'Car')
    assert (car['alpha'], car['truncated'], car['occluded']) == \
        (-1.58, 0.0, 0)
    assert pedestrian['bbox_3d'] == [5.0, 1.6, 10.0, 0.8, 1.8, 0.6, 0.5]
    assert (pedestrian['bbox_label'], pedestrian['ignore_flag']) == (0, 0)
    for other, name in ((van, 'Van'), (dontcare, 'DontCare')):
        assert (other['bbox_label'], other['ignore_flag'], other['name']) \
            == (-1, 1, name)
    assert dataset.get_data_info(1)['instances'] == []


def test_eval_ann_info_is_the_official_kitti_common_format(kitti_root):
    """Every object of the file (DontCare and Van too), dimensions as
    l, h, w, scores zero: traveller59's ``get_label_anno``."""
    dataset = KittiMonoDataset(data_root=kitti_root, data_prefix=TRAINING,
                               metainfo=dict(classes=('Car', )))
    anno = dataset.get_data_info(0)['eval_ann_info']
    assert anno['name'].tolist() == ['Car', 'Van', 'DontCare', 'Pedestrian']
    np.testing.assert_array_equal(anno['truncated'], [0, 0, -1, 0.5])
    assert anno['occluded'].tolist() == [0, 1, -1, 2]
    assert anno['occluded'].dtype.kind == 'i'
    np.testing.assert_array_equal(anno['alpha'], [-1.58, 1.2, -10, 0.3])
    np.testing.assert_array_equal(anno['bbox'][0],
                                  [587.01, 173.33, 614.12, 200.12])
    np.testing.assert_array_equal(
        anno['dimensions'],
        [[3.64, 1.65, 1.67], [5, 2.2, 1.9], [-1, -1, -1], [0.8, 1.8, 0.6]])
    np.testing.assert_array_equal(anno['location'][0], [-0.65, 1.71, 46.7])
    np.testing.assert_array_equal(anno['rotation_y'], [-1.59, 0.8, -10, 0.5])
    np.testing.assert_array_equal(anno['score'], np.zeros(4))
    empty = dataset.get_data_info(1)['eval_ann_info']
    assert empty['bbox'].shape == (0, 4)
    assert empty['dimensions'].shape == empty['location'].shape == (0, 3)
    assert len(empty['name']) == len(empty['score']) == 0


@pytest.mark.parametrize('classes, car, pedestrian',
                         [(('Car', ), 0, -1),
                          (('Pedestrian', 'Car', 'Cyclist'), 1, 0)])
def test_classes_come_from_metainfo(kitti_root, classes, car, pedestrian):
    dataset = KittiMonoDataset(data_root=kitti_root, data_prefix=TRAINING,
                               metainfo=dict(classes=classes))
    assert dataset.metainfo['classes'] == classes
    instances = dataset.get_data_info(0)['instances']
    assert instances[0]['bbox_label'] == car
    assert instances[3]['bbox_label'] == pedestrian
    assert instances[3]['ignore_flag'] == int(pedestrian < 0)


def test_unlabelled_split_has_no_instances_nor_eval_ann_info(kitti_root):
    """The KITTI test split: testing/ has no label_2, the config leaves out
    the 'label' prefix; the test pipeline still packs the sample."""
    os.rename(osp.join(kitti_root, 'training'),
              osp.join(kitti_root, 'testing'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = KittiMonoDataset(
            data_root=kitti_root, split='train',
            data_prefix=dict(img='testing/image_2', calib='testing/calib'),
            test_mode=True,
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadMono3DAnnotations'),
                      dict(type='Mono3DAffine'),
                      dict(type='PackMono3DInputs')])
        info = dataset.get_data_info(0)
        assert info['instances'] == []
        assert 'eval_ann_info' not in info
        sample = dataset[0]['data_samples']
    assert 'eval_ann_info' not in sample
    assert sample.gt_instances_3d.bboxes_3d.shape == (0, 7)
    assert sample.gt_instances.bboxes.shape == (0, 4)
    assert sample.img_shape == (384, 1280)


@pytest.mark.parametrize('missing', [
    'training/calib/000001.txt', 'training/label_2/000001.txt',
    'training/image_2/000001.png', 'ImageSets/train.txt', 'training/label_2'
])
def test_missing_files_are_named(kitti_root, missing):
    path = osp.join(kitti_root, missing)
    if osp.isdir(path):
        for name in os.listdir(path):
            os.remove(osp.join(path, name))
        os.rmdir(path)
    else:
        os.remove(path)
    with pytest.raises(FileNotFoundError, match=missing):
        KittiMonoDataset(data_root=kitti_root, data_prefix=TRAINING)


def test_malformed_label_names_file_and_line(kitti_root):
    label = osp.join(kitti_root, 'training/label_2/000001.txt')
    with open(label, 'w') as f:
        f.write(LABELS['000000'][0] + '\nCar 0.00 0 1.0 1 2 3\n')
    with pytest.raises(ValueError, match='000001.txt:2: expected 15'):
        KittiMonoDataset(data_root=kitti_root, data_prefix=TRAINING)


def test_base_config_builds_the_official_setting_on_embedded_data(
        kitti_shapes_root):
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/_base_/datasets/kitti_mono3d.py'))
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.metainfo.classes == ('Car', )
    affine = [t for t in cfg.train_pipeline if t.type == 'Mono3DAffine'][0]
    assert (affine.input_size, affine.crop_prob, affine.scale, affine.shift,
            affine.depth_scale) == ((1280, 384), 0.5, 0.05, 0.05, 'normal')
    assert cfg.val_evaluator.type == 'KittiMetric'
    flat = dict(img='image_2', label='label_2', calib='calib')
    with DefaultScope.overwrite_default_scope('mmdet'):
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            loader.dataset.update(data_root=kitti_shapes_root,
                                  data_prefix=flat,
                                  metainfo=dict(classes=('Pedestrian',
                                                         'Cyclist', 'Car')))
        train = DATASETS.build(cfg.train_dataloader.dataset)
        val = DATASETS.build(cfg.val_dataloader.dataset)
        np.random.seed(0)
        packed = train[0]
        sample = val[0]['data_samples']
    assert packed['inputs'].shape == (3, 384, 1280)
    assert sample.eval_ann_info['name'].tolist() == [
        line.split()[0] for line in open(
            osp.join(kitti_shapes_root, 'label_2',
                     sample.sample_id + '.txt'))]
    assert sample.flip is False
