"""The embedded datasets load through the real dataset classes, and their
annotations are mutually consistent."""
import json
import math
import os.path as osp

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vitdense.datasets.synthetic import (KITTI_P2, ensure_dataset,
                                         make_coco_shapes)

SHAPES = ('circle', 'square', 'triangle')


def _ann_mask(segmentation, height, width):
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.decode(mask_utils.merge(rles))
    if isinstance(segmentation['counts'], list):
        segmentation = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(segmentation)


@pytest.fixture
def mmdet_scope():
    from mmengine.registry import DefaultScope
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture
def mmseg_scope():
    from mmengine.registry import DefaultScope
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def test_coco_shapes_load_with_mmdet_coco_dataset(coco_shapes_root,
                                                  mmdet_scope):
    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(
        data_root=coco_shapes_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        metainfo=dict(classes=SHAPES),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True,
                       with_mask=True)],
        test_mode=True)
    assert len(dataset) == 8
    item = dataset[0]
    assert item['img'].shape == (128, 128, 3)
    assert len(item['gt_bboxes']) == len(item['gt_masks']) > 0
    assert set(item['gt_bboxes_labels'].tolist()) <= {0, 1, 2}


def test_coco_shapes_masks_match_boxes_in_all_encodings(coco_shapes_root):
    with open(osp.join(coco_shapes_root, 'annotations',
                       'instances_train.json')) as f:
        coco = json.load(f)
    kinds = set()
    for ann in coco['annotations']:
        segmentation = ann['segmentation']
        kinds.add('polygon' if isinstance(segmentation, list) else
                  'crowd-rle' if isinstance(segmentation['counts'], list)
                  else 'rle')
        mask = _ann_mask(segmentation, 128, 128)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        # polygons are traced on pixel centres: within one pixel of the box
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(xs.max() + 1 - (x + w)) <= 1
        assert abs(ys.max() + 1 - (y + h)) <= 1
        if ann['iscrowd']:
            assert isinstance(segmentation['counts'], list)
    assert {'polygon', 'rle'} <= kinds


def test_coco_shapes_crowds_are_uncompressed_rle(tmp_path):
    root = make_coco_shapes(str(tmp_path / 'c'), num_train=30, num_val=1,
                            crowd_prob=0.5, seed=3)
    with open(osp.join(root, 'annotations', 'instances_train.json')) as f:
        anns = json.load(f)['annotations']
    crowds = [a for a in anns if a['iscrowd']]
    assert crowds
    for ann in crowds:
        mask = _ann_mask(ann['segmentation'], 128, 128)
        assert mask.sum() == ann['area']


def test_coco_shapes_panoptic_loads_with_mmdet(coco_shapes_root,
                                               mmdet_scope):
    """mmdet's CocoPanopticDataset reads the json; the PNG ids (R + 256 G +
    256^2 B, the panopticapi encoding) match segments_info exactly."""
    from mmdet.datasets import CocoPanopticDataset
    from PIL import Image
    dataset = CocoPanopticDataset(
        data_root=coco_shapes_root,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        metainfo=dict(thing_classes=SHAPES, stuff_classes=('sky', 'ground'),
                      classes=SHAPES + ('sky', 'ground')),
        pipeline=[], test_mode=True)
    assert len(dataset) == 8
    with open(dataset.ann_file) as f:
        raw = {a['file_name']: a for a in json.load(f)['annotations']}
    num_things = 0
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        rgb = np.array(Image.open(info['seg_map_path'])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]
        segments = raw[osp.basename(info['seg_map_path'])]['segments_info']
        assert set(np.unique(ids).tolist()) == {s['id'] for s in segments}
        for segment in segments:
            assert (ids == segment['id']).sum() == segment['area']
        labels = {s['category'] for s in info['segments_info']}
        assert labels <= set(range(5))
        things = [s for s in info['segments_info'] if s['is_thing']]
        assert all(s['category'] < 3 for s in things)
        num_things += len(things)
    assert num_things > 0


def test_ade20k_shapes_load_with_mmseg_reduce_zero_label(ade20k_shapes_root,
                                                         mmseg_scope):
    from mmseg.datasets import ADE20KDataset
    dataset = ADE20KDataset(
        data_root=ade20k_shapes_root,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True)])
    assert len(dataset) == 4
    assert len(dataset.metainfo['classes']) == 150
    item = dataset[0]
    raw = np.array(__import__('PIL.Image').Image.open(
        item['seg_map_path']))
    assert 0 in raw  # the unlabelled seams
    reduced = item['gt_seg_map']
    assert (reduced[raw == 0] == 255).all()
    assert (reduced[raw > 0] == raw[raw > 0] - 1).all()


def test_kitti_shapes_labels_are_geometrically_consistent(kitti_shapes_root,
                                                          mmdet_scope):
    from vitdense.datasets import KittiMonoDataset
    from vitdense.datasets.synthetic import _corners, _project
    dataset = KittiMonoDataset(data_root=kitti_shapes_root, split='train',
                               pipeline=[dict(type='LoadImageFromFile')])
    assert len(dataset) == 6
    scale = 0.25
    P2 = KITTI_P2.copy()
    P2[:2] *= scale
    seen = 0
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        np.testing.assert_allclose(info['cam2img'], P2, rtol=1e-9)
        for inst in info['instances']:
            x, y, z, l, h, w, ry = inst['bbox_3d']
            pixels = _project(info['cam2img'],
                              _corners((h, w, l), (x, y, z), ry))
            x1, y1 = np.maximum(pixels.min(1), 0)
            x2, y2 = np.minimum(pixels.max(1), (310 - 1, 94 - 1))
            # label_2 rounds every field to two decimals
            np.testing.assert_allclose(inst['bbox'], [x1, y1, x2, y2],
                                       atol=0.5)
            alpha = ry - math.atan2(x, z)
            alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
            assert abs(alpha - inst['alpha']) < 0.02
            assert 0 <= inst['truncated'] <= 1
            assert inst['occluded'] in (0, 1, 2)
            seen += 1
    assert seen > 0
    image = dataset[0]['img']
    assert image.shape == (94, 310, 3)


def test_kitti_label_files_have_15_fields(kitti_shapes_root):
    import glob
    for path in glob.glob(osp.join(kitti_shapes_root, 'label_2', '*.txt')):
        for line in open(path):
            assert len(line.split()) == 15
    calib = open(osp.join(kitti_shapes_root, 'calib', '000000.txt')).read()
    for key in ('P0:', 'P1:', 'P2:', 'P3:', 'R0_rect:', 'Tr_velo_to_cam:'):
        assert key in calib


def test_generation_is_deterministic(tmp_path):
    a = make_coco_shapes(str(tmp_path / 'a'), num_train=3, num_val=1, seed=5)
    b = make_coco_shapes(str(tmp_path / 'b'), num_train=3, num_val=1, seed=5)
    for name in ('instances_train.json', 'panoptic_train.json'):
        assert open(osp.join(a, 'annotations', name)).read() == \
            open(osp.join(b, 'annotations', name)).read()
    assert open(osp.join(a, 'train', '000002.jpg'), 'rb').read() == \
        open(osp.join(b, 'train', '000002.jpg'), 'rb').read()


def test_ensure_dataset_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match='kind must be one of'):
        ensure_dataset('voc', str(tmp_path))


def _make_synthetic(repo_root, monkeypatch, *args):
    """Run tools/dataset_converters/make_synthetic.py in-process."""
    import runpy
    tool = osp.join(repo_root, 'tools', 'dataset_converters',
                    'make_synthetic.py')
    monkeypatch.setattr('sys.argv', [tool, *args])
    runpy.run_path(tool, run_name='__main__')


TINY = ('--num-train', '2', '--num-val', '1')


@pytest.mark.parametrize('force', [False, True])
def test_make_synthetic_never_deletes_a_foreign_folder(repo_root, monkeypatch,
                                                       tmp_path, force):
    root = tmp_path / 'my_coco'
    (root / 'annotations').mkdir(parents=True)
    mine = root / 'annotations' / 'instances_train.json'
    mine.write_text('{"my": "real annotations"}')
    args = ['coco', str(root), *TINY] + (['--force'] if force else [])
    with pytest.raises(SystemExit) as info:
        _make_synthetic(repo_root, monkeypatch, *args)
    assert info.value.code not in (0, None)
    assert str(root) in str(info.value.code)
    assert 'refusing' in str(info.value.code)
    assert mine.read_text() == '{"my": "real annotations"}'
    assert sorted(p.name for p in root.rglob('*')) == [
        'annotations', 'instances_train.json']


def test_generators_refuse_a_foreign_folder(tmp_path):
    (tmp_path / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        make_coco_shapes(str(tmp_path), num_train=1, num_val=1)
    with pytest.raises(FileExistsError, match='not empty'):
        ensure_dataset('ade20k', str(tmp_path), num_train=1, num_val=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['notes.txt']


def test_make_synthetic_rewrites_an_interrupted_generation(
        repo_root, monkeypatch, tmp_path):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    root = tmp_path / 'coco'
    monkeypatch.setattr('cv2.imwrite', interrupt)
    with pytest.raises(KeyboardInterrupt):
        make_coco_shapes(str(root), num_train=2, num_val=1)
    monkeypatch.undo()
    stale = root / 'train' / 'stale.jpg'
    stale.write_bytes(b'half-written')
    assert not (root / '.complete').exists()
    _make_synthetic(repo_root, monkeypatch, 'coco', str(root), *TINY)
    assert (root / '.complete').exists()
    assert not stale.exists()
    assert sorted(p.name for p in (root / 'train').iterdir()) == [
        '000000.jpg', '000001.jpg']


def test_make_synthetic_keeps_a_complete_dataset(repo_root, monkeypatch,
                                                 tmp_path, capsys):
    root = tmp_path / 'coco'
    _make_synthetic(repo_root, monkeypatch, 'coco', str(root), *TINY)
    kept = root / 'kept.txt'
    kept.write_text('x')
    _make_synthetic(repo_root, monkeypatch, 'coco', str(root), *TINY)
    assert kept.exists()
    assert 'already at' in capsys.readouterr().out
    _make_synthetic(repo_root, monkeypatch, 'coco', str(root), *TINY,
                    '--force')
    assert not kept.exists() and (root / '.complete').exists()


def _kitti_frames(root):
    """(sample_id, label objects, P2, RGB image) of every KITTI frame."""
    import glob

    import cv2

    from vitdense.datasets.kitti_mono import (parse_kitti_calib,
                                              parse_kitti_label)
    for path in sorted(glob.glob(osp.join(root, 'image_2', '*.png'))):
        sample_id = osp.splitext(osp.basename(path))[0]
        yield (sample_id,
               parse_kitti_label(osp.join(root, 'label_2',
                                          sample_id + '.txt')),
               parse_kitti_calib(osp.join(root, 'calib',
                                          sample_id + '.txt'))['P2'],
               cv2.imread(path)[..., ::-1])


def test_kitti_shapes_labels_rederive_from_3d_box_and_calib(
        kitti_shapes_root):
    """Every 2D box is the projection of the written 3D box through the
    written P2, clipped to the image (to the labels' two decimals);
    alpha = ry - atan2(x, z) wrapped to [-pi, pi) and the truncation (box
    area outside the image) agree too."""
    from vitdense.datasets.synthetic import _corners, _project
    seen = 0
    for _, objects, P2, image in _kitti_frames(kitti_shapes_root):
        height, width = image.shape[:2]
        for obj in objects:
            x, y, z = obj['location']
            ry = obj['rotation_y']
            pixels = _project(P2, _corners(obj['dimensions'],
                                                 obj['location'], ry))
            x1, y1 = pixels.min(1)
            x2, y2 = pixels.max(1)
            clipped = [max(x1, 0), max(y1, 0), min(x2, width - 1),
                       min(y2, height - 1)]
            np.testing.assert_allclose(obj['bbox'], clipped, atol=0.0051)
            alpha = (ry - math.atan2(x, z) + math.pi) % (2 * math.pi) - \
                math.pi
            assert -math.pi <= obj['alpha'] < math.pi
            assert abs((obj['alpha'] - alpha + math.pi) % (2 * math.pi) -
                       math.pi) <= 0.0051
            inside = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
            assert abs(obj['truncated'] -
                       (1 - inside / ((x2 - x1) * (y2 - y1)))) <= 0.0051
            assert obj['occluded'] in (0, 1, 2)
            seen += 1
    assert seen > 10


def test_kitti_shapes_shade_each_visible_face_by_orientation(tmp_path):
    """In frames with one object (nothing can cover it) the pixel at the
    centre of each visible face has that face's shade: the front (the
    heading of rotation_y) lightest, sides and top in between, the back
    darkest, so front and side differ."""
    from vitdense.datasets.synthetic import (_FACES, _corners,
                                             _camera_centre, _project,
                                             make_kitti_shapes)
    root = make_kitti_shapes(str(tmp_path / 'k'), num_train=60, num_val=0,
                             scale=0.5, seed=4)
    base = {'Car': (230, 70, 60), 'Pedestrian': (70, 210, 90),
            'Cyclist': (70, 110, 230)}
    checked = set()
    for _, objects, P2, image in _kitti_frames(root):
        if len(objects) != 1 or objects[0]['truncated'] > 0:
            continue
        obj = objects[0]
        corners = _corners(obj['dimensions'], obj['location'],
                                 obj['rotation_y'])
        camera = _camera_centre(P2)
        colour = np.array(base[obj['type']]) * (
            1 - obj['location'][2] / 120)
        seen = {}
        for name, index, brightness in _FACES:
            face = corners[:, index]
            outward = face.mean(1) - corners.mean(1)
            polygon = _project(P2, face)
            area = 0.5 * abs(np.cross(polygon[:, 2] - polygon[:, 0],
                                      polygon[:, 3] - polygon[:, 1]))
            if outward @ (camera - face.mean(1)) <= 0 or area < 60:
                continue
            u, v = np.round(polygon.mean(1)).astype(int)
            expected = colour * brightness
            if name == 'front':
                expected = 0.55 * expected + 0.45 * 255
            np.testing.assert_allclose(image[v, u], expected, atol=1.01)
            seen[name] = image[v, u].astype(int)
        sides = [seen[n] for n in ('left', 'right') if n in seen]
        if 'front' in seen and sides:
            assert np.abs(seen['front'] - sides[0]).sum() > 60
            assert seen['front'].sum() > sides[0].sum()
            checked.add('front')
        if 'back' in seen and sides:
            assert seen['back'].sum() < sides[0].sum()
            checked.add('back')
    assert checked == {'front', 'back'}


def test_make_synthetic_kitti_size_and_scale_options(repo_root, monkeypatch,
                                                     tmp_path):
    from vitdense.datasets.kitti_mono import parse_kitti_calib
    root = tmp_path / 'kitti'
    _make_synthetic(repo_root, monkeypatch, 'kitti', str(root),
                    '--num-train', '5', '--num-val', '2', '--scale', '0.5')
    images = sorted(p.name for p in (root / 'image_2').iterdir())
    assert images == [f'{i:06d}.png' for i in range(7)]
    assert (root / 'ImageSets' / 'val.txt').read_text().split() == [
        '000005', '000006']
    import cv2
    assert cv2.imread(str(root / 'image_2' / '000003.png')).shape == (
        188, 621, 3)
    P2 = parse_kitti_calib(str(root / 'calib' / '000003.txt'))['P2']
    expected = KITTI_P2.copy()
    expected[:2] *= 0.5
    np.testing.assert_allclose(P2, expected, rtol=1e-9)
    with pytest.raises(SystemExit, match='kitti only'):
        _make_synthetic(repo_root, monkeypatch, 'coco',
                        str(tmp_path / 'c'), *TINY, '--scale', '0.5')


def test_kitti_generation_is_deterministic_per_seed(tmp_path):
    from vitdense.datasets.synthetic import make_kitti_shapes
    a, b, c = (make_kitti_shapes(str(tmp_path / name), num_train=3,
                                 num_val=1, seed=seed)
               for name, seed in (('a', 7), ('b', 7), ('c', 8)))
    for sub, name in (('label_2', '000002.txt'), ('image_2', '000002.png'),
                      ('calib', '000002.txt')):
        data = [open(osp.join(root, sub, name), 'rb').read()
                for root in (a, b, c)]
        assert data[0] == data[1]
        if sub != 'calib':
            assert data[0] != data[2]
