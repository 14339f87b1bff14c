"""KITTI label/result files <-> kitti_common annotation dicts."""
import os.path as osp

import numpy as np
import pytest

from vitdense.evaluation.functional.kitti_files import (
    read_kitti_label_dir, read_kitti_label_file, round_kitti_anno,
    write_kitti_label_file)

LABEL = ('Car 0.12 1 -1.57 100.00 120.50 300.25 200.75 '
         '1.50 1.60 3.90 -2.50 1.70 20.10 -1.68\n'
         'DontCare -1 -1 -10 5.00 6.00 7.00 8.00 -1 -1 -1 '
         '-1000 -1000 -1000 -10\n')


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def test_read_label_file_gives_kitti_common_anno(tmp_path):
    _write(tmp_path / '000007.txt', LABEL)
    anno = read_kitti_label_file(str(tmp_path / '000007.txt'))
    assert anno['name'].tolist() == ['Car', 'DontCare']
    np.testing.assert_allclose(anno['truncated'], [0.12, -1])
    assert anno['occluded'].tolist() == [1, -1]
    np.testing.assert_allclose(anno['alpha'], [-1.57, -10])
    np.testing.assert_allclose(anno['bbox'][0], [100, 120.5, 300.25, 200.75])
    # The file stores h, w, l; kitti_common's dimensions are l, h, w.
    np.testing.assert_allclose(anno['dimensions'][0], [3.9, 1.5, 1.6])
    np.testing.assert_allclose(anno['location'][0], [-2.5, 1.7, 20.1])
    np.testing.assert_allclose(anno['rotation_y'], [-1.68, -10])
    np.testing.assert_array_equal(anno['score'], [0, 0])


def test_read_label_dir_orders_by_ids_and_missing_file_is_empty(tmp_path):
    _write(tmp_path / '000001.txt', LABEL)
    _write(tmp_path / '000000.txt', '')
    annos = read_kitti_label_dir(str(tmp_path), ['000001', '000009'])
    assert [len(a['name']) for a in annos] == [2, 0]
    empty = annos[1]
    assert empty['bbox'].shape == (0, 4)
    assert empty['dimensions'].shape == (0, 3)
    assert empty['location'].shape == (0, 3)
    assert empty['score'].shape == (0,)


def test_read_label_dir_without_ids_reads_all_files_sorted(tmp_path):
    _write(tmp_path / '000002.txt', LABEL)
    _write(tmp_path / '000000.txt', '')
    _write(tmp_path / 'notes.md', 'not a label')
    annos = read_kitti_label_dir(str(tmp_path))
    assert [len(a['name']) for a in annos] == [0, 2]


def test_read_label_dir_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        read_kitti_label_dir(str(tmp_path / 'nowhere'))


@pytest.mark.parametrize('line,problem', [
    ('Car 0 0 0 1 2 3 4 1 1 1 0 0 10\n', 'expected 15 fields'),
    ('Car 0 0 0 1 2 3 4 1 1 x 0 0 10 0\n', 'non-numeric'),
])
def test_malformed_line_names_file_line_and_problem(tmp_path, line, problem):
    path = str(tmp_path / '000003.txt')
    _write(path, LABEL + line)
    with pytest.raises(ValueError, match=rf'000003\.txt:3: {problem}'):
        read_kitti_label_dir(str(tmp_path), ['000003'])


def test_mixed_label_and_result_lines_are_refused(tmp_path):
    path = str(tmp_path / '000004.txt')
    _write(path, LABEL.splitlines()[0] + ' 0.9\n' + LABEL.splitlines()[1])
    with pytest.raises(ValueError, match=r'000004\.txt: object 2 has 15'):
        read_kitti_label_file(path)


def test_write_then_read_round_trips_with_16_fields(tmp_path):
    anno = {
        'name': np.array(['Car', 'Pedestrian']),
        'truncated': np.array([-1.0, -1.0]),
        'occluded': np.array([-1, -1]),
        'alpha': np.array([0.123456, -3.1]),
        'bbox': np.array([[10.5, 20.25, 100.125, 90.0], [1, 2, 3, 4.0]]),
        'dimensions': np.array([[3.9, 1.5, 1.6], [0.8, 1.7, 0.6]]),
        'location': np.array([[1.0, 1.6, 20.0], [-3.0, 1.7, 9.87654]]),
        'rotation_y': np.array([0.5, -1.0]),
        'score': np.array([0.98765, 0.1])}
    path = str(tmp_path / 'sub' / '000005.txt')
    write_kitti_label_file(path, anno)
    lines = open(path).read().splitlines()
    assert lines[0] == ('Car -1.0000 -1 0.1235 10.5000 20.2500 100.1250 '
                        '90.0000 1.5000 1.6000 3.9000 1.0000 1.6000 20.0000 '
                        '0.5000 0.9877')
    assert all(len(line.split()) == 16 for line in lines)
    back = read_kitti_label_file(path)
    assert back['name'].tolist() == ['Car', 'Pedestrian']
    for key in ('truncated', 'alpha', 'bbox', 'dimensions', 'location',
                'rotation_y', 'score'):
        np.testing.assert_allclose(back[key], anno[key], atol=5e-5)
    assert back['occluded'].tolist() == [-1, -1]


def test_write_empty_frame_is_an_empty_file(tmp_path):
    path = str(tmp_path / '000006.txt')
    write_kitti_label_file(path, read_kitti_label_dir(
        str(tmp_path), ['000006'])[0])
    assert open(path).read() == ''
    assert osp.isfile(path)


def test_embedded_kitti_labels_read_as_official_annos(kitti_shapes_root):
    label_dir = osp.join(kitti_shapes_root, 'label_2')
    with open(osp.join(kitti_shapes_root, 'ImageSets', 'val.txt')) as f:
        ids = f.read().split()
    annos = read_kitti_label_dir(label_dir, ids)
    assert len(annos) == len(ids)
    first = open(osp.join(label_dir, ids[0] + '.txt')).readline().split()
    np.testing.assert_allclose(annos[0]['dimensions'][0],
                               [float(first[v]) for v in (10, 8, 9)])


def test_rounded_anno_is_exactly_what_is_read_back(tmp_path):
    rng = np.random.default_rng(0)
    num = 500
    anno = {
        'name': np.array(['Car'] * num), 'truncated': -np.ones(num),
        'occluded': -np.ones(num, np.int64),
        'alpha': rng.uniform(-np.pi, np.pi, num),
        'bbox': rng.uniform(-50, 1300, (num, 4)),
        'dimensions': rng.uniform(0.3, 5, (num, 3)),
        'location': rng.normal(0, 30, (num, 3)),
        'rotation_y': rng.uniform(-np.pi, np.pi, num),
        'score': rng.uniform(0, 1, num)}
    rounded = round_kitti_anno(anno)
    assert not np.array_equal(rounded['location'], anno['location'])
    path = str(tmp_path / '000000.txt')
    write_kitti_label_file(path, anno)
    back = read_kitti_label_file(path)
    for key, value in rounded.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
