"""vitdense.apis: mmdet's and mmseg's inferencers on vitdense configs give
tools/test.py's predictions for the same image and checkpoint, load
checkpoints safely and strictly, and drop annotation loaders."""
import glob
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config

from vitdense.apis import (VitdenseDetInferencer, VitdenseSegInferencer,
                           init_inferencer)
from vitdense.apis.inference import ANNOTATION_LOADER
from vitdense.engine.hooks import CheckpointMismatchError
from vitdense.utils import UnsafeCheckpointError

TINY_DET = 'tests/data/configs/tiny_dino_shapes.py'
SEG_CONFIG = 'configs/vit_comer/upernet_vit-comer-nano_1xb2-shapes.py'


def _by_image(results_pkl):
    with open(results_pkl, 'rb') as f:
        return {osp.basename(r['img_path']): r for r in pickle.load(f)}


@pytest.mark.slow
def test_det_inferencer_equals_test_tool(det_run, coco_shapes_root,
                                         repo_root):
    expected = _by_image(det_run['results'])
    inferencer = init_inferencer(osp.join(repo_root, det_run['config']),
                                 det_run['checkpoint'],
                                 device='cpu', show_progress=False)
    assert isinstance(inferencer, VitdenseDetInferencer)
    images = sorted(glob.glob(osp.join(coco_shapes_root, 'val', '*.jpg')))
    assert len(images) == len(expected) == 8
    predictions = inferencer(images[:3], return_datasamples=True)[
        'predictions']
    for image, sample in zip(images[:3], predictions):
        want = expected[osp.basename(image)]['pred_instances']
        got = sample.pred_instances
        assert len(got) == len(want['scores']) == 100
        torch.testing.assert_close(got.scores, want['scores'], rtol=0,
                                   atol=1e-6)
        torch.testing.assert_close(got.bboxes, want['bboxes'], rtol=0,
                                   atol=1e-4)
        assert torch.equal(got.labels, want['labels'])
    # the classes come from the checkpoint, as mmdet reads them
    assert inferencer.model.dataset_meta['classes'] == (
        'circle', 'square', 'triangle')


@pytest.mark.slow
def test_seg_inferencer_equals_test_tool(seg_run, ade20k_shapes_root,
                                         repo_root):
    expected = _by_image(seg_run['results'])
    inferencer = init_inferencer(osp.join(repo_root, seg_run['config']),
                                 seg_run['checkpoint'],
                                 device='cpu')
    assert isinstance(inferencer, VitdenseSegInferencer)
    images = sorted(glob.glob(osp.join(ade20k_shapes_root, 'images',
                                       'validation', '*.jpg')))
    assert len(images) == len(expected)
    predictions = inferencer(images[:2], return_datasamples=True)
    for image, sample in zip(images[:2], predictions):
        want = expected[osp.basename(image)]['pred_sem_seg']['data']
        got = sample.pred_sem_seg.data
        assert got.shape == want.shape
        assert torch.equal(got, want)
        torch.testing.assert_close(
            sample.seg_logits.data,
            expected[osp.basename(image)]['seg_logits']['data'], rtol=0,
            atol=1e-5)


def test_annotation_loaders_are_matched():
    for name in ('LoadAnnotations', 'mmdet.LoadAnnotations',
                 'LoadValidatedSegAnnotations', 'LoadDepthAnnotation',
                 'vitdense.LoadMono3DAnnotations'):
        assert ANNOTATION_LOADER.match(name), name
    for name in ('LoadImageFromFile', 'PackDetInputs', 'Resize'):
        assert not ANNOTATION_LOADER.match(name), name


def test_seg_pipeline_loses_validated_annotation_loader(repo_root):
    """mmseg's inferencer keeps LoadValidatedSegAnnotations (it removes only
    ``LoadAnnotations``), which then fails on an image without labels."""
    inferencer = init_inferencer(osp.join(repo_root, SEG_CONFIG),
                                 device='cpu')
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert names == ['InferencerLoader', 'Resize', 'PackSegInputs']
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
    label = inferencer(image)['predictions']
    assert label.shape == (50, 70)


def _tiny_checkpoint(path, repo_root, drop_key=False):
    from vitdense.utils import register_all_modules
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    register_all_modules(init_default_scope=False)
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(osp.join(repo_root, TINY_DET)).model)
    state = model.state_dict()
    if drop_key:
        state.pop(next(iter(state)))
    torch.save({'state_dict': state,
                'meta': {'dataset_meta': {'classes': ('a', 'b', 'c')}}}, path)
    return str(path)


def test_checkpoint_that_does_not_fit_is_refused(tmp_path, repo_root):
    checkpoint = _tiny_checkpoint(tmp_path / 'partial.pth', repo_root,
                                  drop_key=True)
    with pytest.raises(CheckpointMismatchError,
                       match="1 of the model's .* keys are missing"):
        init_inferencer(osp.join(repo_root, TINY_DET), checkpoint,
                        device='cpu')


class _Payload:

    def __reduce__(self):
        return (print, ('code ran while loading',))


def test_checkpoint_is_loaded_with_the_safe_loader(tmp_path, repo_root,
                                                   capsys):
    path = str(tmp_path / 'hostile.pth')
    torch.save({'state_dict': {}, 'meta': _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError):
        init_inferencer(osp.join(repo_root, TINY_DET), path, device='cpu')
    assert 'code ran while loading' not in capsys.readouterr().out


def test_fitting_checkpoint_loads_with_its_classes(tmp_path, repo_root):
    checkpoint = _tiny_checkpoint(tmp_path / 'ok.pth', repo_root)
    inferencer = init_inferencer(osp.join(repo_root, TINY_DET), checkpoint,
                                 device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == ('a', 'b', 'c')
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert 'LoadAnnotations' not in names


def test_missing_files_and_unsupported_configs_are_clear(tmp_path,
                                                         repo_root):
    with pytest.raises(FileNotFoundError, match='config not found'):
        init_inferencer(str(tmp_path / 'none.py'))
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        init_inferencer(osp.join(repo_root, TINY_DET),
                        str(tmp_path / 'none.pth'))
    kitti = glob.glob(osp.join(repo_root, 'configs', 'monodetr', '*nano*'))[0]
    with pytest.raises(NotImplementedError, match='tools/test.py'):
        init_inferencer(kitti)
