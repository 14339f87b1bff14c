"""Bad input gives a clear error naming the file and the problem."""
import json
import os.path as osp
import shutil

import pytest

from vitdense.datasets import ValidatedCocoDataset

SHAPES = ('circle', 'square', 'triangle')


@pytest.fixture(autouse=True)
def mmdet_scope():
    from mmengine.registry import DefaultScope
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _dataset(root, ann_file='annotations/instances_val.json', **kwargs):
    return ValidatedCocoDataset(
        data_root=root, ann_file=ann_file, data_prefix=dict(img='val/'),
        metainfo=dict(classes=kwargs.pop('classes', SHAPES)),
        pipeline=kwargs.pop('pipeline', []), **kwargs)


@pytest.fixture
def coco_copy(coco_shapes_root, tmp_path):
    root = str(tmp_path / 'coco')
    shutil.copytree(coco_shapes_root, root)
    return root


def _edit_json(root, edit):
    path = osp.join(root, 'annotations', 'instances_val.json')
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


def test_valid_data_loads(coco_shapes_root):
    assert len(_dataset(coco_shapes_root)) == 8


def test_missing_data_root_says_how_to_generate(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError) as info:
        _dataset(missing)
    assert 'nowhere' in str(info.value)
    assert 'make_synthetic.py coco' in str(info.value)


def test_malformed_json_names_file_and_line(coco_copy):
    path = osp.join(coco_copy, 'annotations', 'instances_val.json')
    with open(path, 'w') as f:
        f.write('{"images": [\n  {"id": 1,,}\n')
    with pytest.raises(ValueError, match=r'instances_val.json: malformed '
                       r'annotation JSON at line 2'):
        _dataset(coco_copy)


def test_json_without_coco_keys_is_rejected(coco_copy):
    path = osp.join(coco_copy, 'annotations', 'instances_val.json')
    with open(path, 'w') as f:
        json.dump({'pictures': []}, f)
    with pytest.raises(ValueError, match='not a COCO annotation file'):
        _dataset(coco_copy)


@pytest.mark.parametrize('bbox,problem', [
    ([10, 10, 0, 5], 'zero or negative size'),
    ([10, 10, 5, -3], 'zero or negative size'),
    ([120, 10, 30, 5], 'outside the 128x128 image'),
    ([-20, -20, 5, 5], 'outside the 128x128 image'),
])
def test_bad_boxes_are_errors_naming_the_annotation(coco_copy, bbox, problem):
    def edit(data):
        data['annotations'][0]['bbox'] = bbox
    _edit_json(coco_copy, edit)
    with pytest.raises(ValueError) as info:
        _dataset(coco_copy)
    message = str(info.value)
    assert 'instances_val.json' in message and problem in message
    assert 'annotation id 1 ' in message


def test_bad_boxes_can_be_skipped_explicitly(coco_copy):
    def edit(data):
        data['annotations'][0]['bbox'] = [10, 10, 0, 5]
    _edit_json(coco_copy, edit)
    dataset = _dataset(coco_copy, invalid_boxes='skip')
    assert dataset._num_skipped == 1


def test_unknown_class_name_is_an_error(coco_copy):
    with pytest.raises(ValueError, match=r"classes \['hexagon'\]"):
        _dataset(coco_copy, classes=('circle', 'hexagon'))


def test_images_without_annotations_are_kept_for_testing(coco_copy):
    def edit(data):
        first = data['images'][0]['id']
        data['annotations'] = [a for a in data['annotations']
                               if a['image_id'] != first]
    _edit_json(coco_copy, edit)
    dataset = _dataset(coco_copy, test_mode=True)
    assert len(dataset) == 8
    assert dataset.get_data_info(0)['instances'] == []


def test_undecodable_image_names_the_file(coco_copy):
    image = osp.join(coco_copy, 'val', '000000.jpg')
    with open(image, 'wb') as f:
        f.write(b'not a jpeg at all')
    dataset = _dataset(coco_copy, pipeline=[dict(type='LoadImageFromFile')],
                       check_image_size=False)
    with pytest.raises(Exception) as info:
        dataset[0]
    assert '000000.jpg' in str(info.value)


@pytest.fixture
def tiny_coco(tmp_path):
    """Three 32x24 JPEGs and a clean instances JSON; returns (root, data)."""
    import cv2
    import numpy as np
    root = tmp_path / 'tiny'
    (root / 'val').mkdir(parents=True)
    (root / 'annotations').mkdir()
    images, annotations = [], []
    for index in range(3):
        name = f'{index:06d}.jpg'
        cv2.imwrite(str(root / 'val' / name), np.full((24, 32, 3), 90,
                                                      np.uint8))
        images.append({'id': index + 1, 'file_name': name, 'width': 32,
                       'height': 24})
        for k in range(2):
            annotations.append({
                'id': len(annotations) + 1, 'image_id': index + 1,
                'category_id': k + 1, 'bbox': [2.0 + 10 * k, 3.0, 8.0, 6.0],
                'area': 48.0, 'iscrowd': 0})
    data = {'images': images, 'annotations': annotations,
            'categories': [{'id': i + 1, 'name': n}
                           for i, n in enumerate(SHAPES)]}
    return str(root), data


def _write(root, data):
    path = osp.join(root, 'annotations', 'instances_val.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    return path


def test_tiny_clean_file_loads_with_every_box(tiny_coco):
    root, data = tiny_coco
    _write(root, data)
    dataset = _dataset(root)
    assert [len(dataset.get_data_info(i)['instances'])
            for i in range(3)] == [2, 2, 2]


@pytest.mark.parametrize('edit,problem', [
    (lambda a: a.update(bbox=[2.0, 3.0, float('nan'), 6.0]),
     r'bbox \[2.0, 3.0, nan, 6.0\] has non-finite coordinates'),
    (lambda a: a.update(bbox=['2', '3', '8', '6']),
     r"bbox \['2', '3', '8', '6'\] is not 4 numbers"),
    (lambda a: a.update(bbox=[2.0, 3.0, 8.0]),
     r'bbox \[2.0, 3.0, 8.0\] is not 4 numbers'),
    (lambda a: a.pop('bbox'), 'has no "bbox" key'),
    (lambda a: a.update(area=float('nan')), 'area nan is not a finite'),
    (lambda a: a.update(category_id=9),
     r'category_id 9 is not one of the file\'s categories \[1, 2, 3\]'),
    (lambda a: a.update(image_id=99),
     'image_id 99 is not one of the file\'s images'),
])
def test_unreadable_annotation_is_an_error_naming_file_and_id(
        tiny_coco, edit, problem):
    root, data = tiny_coco
    edit(data['annotations'][3])
    _write(root, data)
    with pytest.raises(ValueError, match=problem) as info:
        _dataset(root)
    assert 'instances_val.json: annotation id 4 ' in str(info.value)


def test_every_unreadable_annotation_is_counted(tiny_coco):
    root, data = tiny_coco
    for ann in data['annotations'][1:4]:
        ann['bbox'][0] = float('nan')
    _write(root, data)
    with pytest.raises(ValueError, match=r'annotation id 2 .* 2 more '
                       r'annotations have problems \(ids 3, 4\)'):
        _dataset(root)


@pytest.mark.parametrize('field,value,what', [
    ('bbox', [2.0, 3.0, 0.5, 6.0], 'boxes under 1 px wide or high'),
    ('area', 0, 'annotations with area <= 0'),
])
def test_boxes_mmdet_drops_are_dropped_with_a_warning(tiny_coco, field,
                                                      value, what):
    root, data = tiny_coco
    for ann in data['annotations'][2:4]:
        ann[field] = value
    _write(root, data)
    with pytest.warns(UserWarning, match=f'instances_val.json: dropped 2 '
                      f'{what} as mmdet does \\(annotation ids 3, 4\\)'):
        dataset = _dataset(root)
    assert [len(dataset.get_data_info(i)['instances'])
            for i in range(3)] == [2, 0, 2]


def test_image_of_another_size_than_the_json_is_an_error(tiny_coco):
    import cv2
    import numpy as np
    root, data = tiny_coco
    _write(root, data)
    cv2.imwrite(osp.join(root, 'val', '000001.jpg'),
                np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(ValueError) as info:
        _dataset(root)
    message = str(info.value)
    assert 'instances_val.json: image id 2' in message
    assert '000001.jpg' in message
    assert 'the image is 40x30 (width x height) but the file says 32x24' \
        in message
    assert len(_dataset(root, check_image_size=False)) == 3


def test_image_rotated_by_exif_is_accepted(tiny_coco):
    from PIL import Image
    root, data = tiny_coco
    _write(root, data)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (24, 32)).save(osp.join(root, 'val', '000001.jpg'),
                                    exif=exif)
    assert len(_dataset(root)) == 3


def test_unreadable_image_is_an_error_when_the_dataset_is_built(tiny_coco):
    root, data = tiny_coco
    _write(root, data)
    with open(osp.join(root, 'val', '000002.jpg'), 'wb') as f:
        f.write(b'not a jpeg')
    with pytest.raises(ValueError, match=r'image id 3 \(.*000002.jpg\): '
                       'cannot read the image'):
        _dataset(root)


def test_shipped_evaluator_refuses_a_nan_ground_truth_box(tiny_coco,
                                                          repo_root):
    from mmdet.registry import METRICS
    from mmengine.config import Config
    root, data = tiny_coco
    path = _write(root, data)
    cfg = Config.fromfile(osp.join(repo_root, 'configs', '_base_',
                                   'datasets', 'coco_shapes_detection.py'))
    evaluator = dict(cfg.val_evaluator, ann_file=path)
    METRICS.build(evaluator)
    data['annotations'][0]['bbox'][1] = float('nan')
    _write(root, data)
    with pytest.raises(ValueError, match='instances_val.json: annotation id '
                       '1 of image id 1: bbox .* non-finite'):
        METRICS.build(evaluator)


def test_shipped_evaluator_scores_a_perfect_detector_1(tiny_coco, repo_root):
    import torch
    from mmdet.registry import METRICS
    from mmengine.config import Config
    root, data = tiny_coco
    path = _write(root, data)
    cfg = Config.fromfile(osp.join(repo_root, 'configs', '_base_',
                                   'datasets', 'coco_shapes_detection.py'))
    metric = METRICS.build(dict(cfg.val_evaluator, ann_file=path))
    metric.dataset_meta = dict(classes=SHAPES)
    for image in data['images']:
        anns = [a for a in data['annotations']
                if a['image_id'] == image['id']]
        boxes = torch.tensor([[x, y, x + w, y + h]
                              for x, y, w, h in (a['bbox'] for a in anns)])
        metric.process({}, [dict(
            img_id=image['id'], ori_shape=(24, 32),
            pred_instances=dict(
                bboxes=boxes, scores=torch.ones(len(anns)),
                labels=torch.tensor([a['category_id'] - 1 for a in anns])))])
    assert metric.evaluate(3)['coco/bbox_mAP'] == 1.0
