"""Shared fixtures: the embedded datasets, written once per test session."""
import os
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope='session')
def coco_shapes_root(tmp_path_factory) -> str:
    from vitdense.datasets.synthetic import make_coco_shapes
    root = str(tmp_path_factory.mktemp('coco_shapes'))
    return make_coco_shapes(root, num_train=16, num_val=8, seed=1)


@pytest.fixture(scope='session')
def ade20k_shapes_root(tmp_path_factory) -> str:
    from vitdense.datasets.synthetic import make_ade20k_shapes
    root = str(tmp_path_factory.mktemp('ade20k_shapes'))
    return make_ade20k_shapes(root, num_train=8, num_val=4, seed=1)


@pytest.fixture(scope='session')
def imagenet_shapes_root(tmp_path_factory) -> str:
    from vitdense.datasets.synthetic import make_imagenet_shapes
    root = str(tmp_path_factory.mktemp('imagenet_shapes'))
    return make_imagenet_shapes(root, num_train=20, num_val=10, seed=1)


@pytest.fixture(scope='session')
def kitti_shapes_root(tmp_path_factory) -> str:
    from vitdense.datasets.synthetic import make_kitti_shapes
    root = str(tmp_path_factory.mktemp('kitti_shapes'))
    return make_kitti_shapes(root, num_train=6, num_val=3, seed=1)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cuda: needs a CUDA GPU (skipped without one)')
    config.addinivalue_line(
        'markers', 'slow: end-to-end tool runs (run by default; deselect '
        'with -m "not slow")')
    if os.environ.get('PYTEST_XDIST_WORKER'):
        # `make test` runs a pytest-xdist worker per core: one thread each
        # fills the cores without OpenMP pools spinning against each other
        os.environ['OMP_NUM_THREADS'] = '1'
    os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
