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
    dataset = _dataset(coco_copy, pipeline=[dict(type='LoadImageFromFile')])
    with pytest.raises(Exception) as info:
        dataset[0]
    assert '000000.jpg' in str(info.value)
