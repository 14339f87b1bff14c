"""tools/test.py refuses a checkpoint that does not fit the model (unless
--allow-partial-load); tools/train.py --resume of a weights-only checkpoint
says it holds no training state and points to load_from."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from vitdense.registry import MODELS
from vitdense.utils import register_all_modules

from ._helpers import TINY_CONFIG, data_options, run_tool

pytestmark = pytest.mark.slow  # end-to-end runs of the tools


@pytest.fixture(scope='module')
def tiny_weights():
    """The tiny config's freshly initialised weights."""
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(TINY_CONFIG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    return MODELS.build(cfg.model).state_dict()


def test_test_tool_refuses_another_models_checkpoint(tiny_weights,
                                                     coco_shapes_root,
                                                     tmp_path):
    weights = dict(tiny_weights)
    missing = next(k for k in weights if k.startswith('backbone.'))
    del weights[missing]
    weights['extra.weight'] = torch.zeros(2)
    reshaped = next(k for k in weights if k.startswith('bbox_head.cls_'))
    model_shape = tuple(weights[reshaped].shape)
    weights[reshaped] = torch.zeros((7, ) + model_shape[1:])
    checkpoint = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=weights), checkpoint)

    args = ['tools/test.py', TINY_CONFIG, checkpoint, '--work-dir',
            str(tmp_path), '--cfg-options'] + data_options(coco_shapes_root)
    refused = run_tool(args, check=False)
    assert refused.returncode != 0
    n = len(tiny_weights)
    assert 'CheckpointMismatchError' in refused.stderr
    assert f'{checkpoint} does not fit the model' in refused.stderr
    assert (f'1 of {n} tensors have another shape (checkpoint vs model): '
            f'{reshaped} {(7, ) + model_shape[1:]} vs {model_shape}'
            in refused.stderr)
    assert f"1 of the model's {n} keys are missing: {missing}" in \
        refused.stderr
    assert f"1 of the checkpoint's {n} keys are not in the model: " \
        'extra.weight' in refused.stderr
    assert '--allow-partial-load' in refused.stderr
    assert 'coco/bbox_mAP' not in refused.stdout + refused.stderr

    allowed = run_tool(args[:3] + ['--allow-partial-load'] + args[3:])
    assert 'coco/bbox_mAP' in allowed.stdout + allowed.stderr


def test_resume_of_weights_only_checkpoint_says_so(tiny_weights,
                                                   coco_shapes_root,
                                                   tmp_path):
    checkpoint = str(tmp_path / 'weights_only.pth')
    # As a converter writes it: meta, but no training state.
    torch.save(dict(meta=dict(source='converted'), state_dict=tiny_weights),
               checkpoint)
    result = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir',
                       str(tmp_path / 'work'), '--resume', checkpoint,
                       '--cfg-options'] + data_options(coco_shapes_root),
                      check=False)
    assert result.returncode != 0
    assert 'KeyError' not in result.stderr
    assert f'NoTrainingStateError: {checkpoint} holds no training state' in \
        result.stderr
    assert f'--cfg-options load_from={checkpoint}' in result.stderr
    assert not osp.exists(str(tmp_path / 'work' / 'iter_6.pth'))
