"""Refuse a checkpoint that cannot do what it is loaded for.

mmengine loads ``load_from`` non-strictly: another model's checkpoint only
logs "size mismatch" / "missing keys" warnings and ``tools/test.py`` then
reports metrics of a partly random model. And ``--resume`` of a weights-only
file (a converted or published checkpoint) dies with ``KeyError: 'epoch'``.
This hook looks at the checkpoint in ``after_load_checkpoint``, i.e. after
mmengine read the file and before any weight is copied into the model.
"""
from typing import List

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import find_latest_checkpoint

from vitdense.registry import HOOKS
from vitdense.utils.checkpoint import compare_state_dicts

__all__ = ['CheckpointCheckHook', 'CheckpointMismatchError',
           'NoTrainingStateError', 'state_dict_mismatch']

#: How many keys of each kind an error message names.
SHOWN_KEYS = 5


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model."""


class NoTrainingStateError(RuntimeError):
    """``--resume`` was given a checkpoint without training state."""


def _first(keys: List[str]) -> str:
    shown = ', '.join(keys[:SHOWN_KEYS])
    return shown + (', ...' if len(keys) > SHOWN_KEYS else '')


def state_dict_mismatch(model: nn.Module, state_dict: dict) -> str:
    """Describe how ``state_dict`` differs from ``model``'s, '' if it fits.

    Compares as mmengine's ``load_state_dict`` loads: a ``module.`` prefix is
    stripped and a missing BN ``num_batches_tracked`` is not an error. Keys
    are compared as saved: a module that renames legacy keys in its
    ``_load_from_state_dict`` (e.g. mmcv's DCN before version 2) is not
    consulted.
    """
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v
                  for k, v in state_dict.items()}
    expected = model.state_dict()
    missing, unexpected, shapes = compare_state_dicts(expected, state_dict)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    mismatched = [f'{k} {given} vs {own}' for k, given, own in shapes]
    parts = []
    if mismatched:
        parts.append(f'{len(mismatched)} of {len(expected)} tensors have '
                     f'another shape (checkpoint vs model): '
                     f'{_first(mismatched)}')
    if missing:
        parts.append(f'{len(missing)} of the model\'s {len(expected)} keys '
                     f'are missing: {_first(missing)}')
    if unexpected:
        parts.append(f'{len(unexpected)} of the checkpoint\'s '
                     f'{len(state_dict)} keys are not in the model: '
                     f'{_first(unexpected)}')
    return '; '.join(parts)


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Check a checkpoint as the runner loads it.

    Args:
        exact_keys (bool): refuse a checkpoint whose ``state_dict`` has
            missing, unexpected or differently shaped tensors
            (:class:`CheckpointMismatchError`). ``tools/test.py`` sets it
            unless ``--allow-partial-load``.
        training_state (bool): on resume, refuse a checkpoint without
            mmengine's training state (``meta`` epoch/iter and
            ``message_hub``) with :class:`NoTrainingStateError`.
            ``tools/train.py`` sets it.
    """

    priority = 'VERY_HIGH'

    def __init__(self, exact_keys: bool = False,
                 training_state: bool = False) -> None:
        self.exact_keys = exact_keys
        self.training_state = training_state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # The file Runner.load_or_resume reads: load_from, or on an
        # automatic resume the one named by work_dir/last_checkpoint.
        filename = runner._load_from or find_latest_checkpoint(
            runner.work_dir)
        if self.training_state and runner._resume:
            meta = checkpoint.get('meta')
            if not (isinstance(meta, dict) and 'epoch' in meta
                    and 'iter' in meta and 'message_hub' in checkpoint):
                raise NoTrainingStateError(
                    f'{filename} holds no training state (no meta epoch/'
                    f'iter or message_hub; its keys: '
                    f'{_first(list(map(str, checkpoint)))}): it is a weights-'
                    'only checkpoint, and --resume continues a run from a '
                    'checkpoint that tools/train.py saved. To start a new '
                    'run from these weights, drop --resume and pass '
                    f'--cfg-options load_from={filename}')
        if self.exact_keys:
            model = runner.model
            # mmengine loads into the model inside a wrapper or TTA model.
            while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
                model = model.module
            problem = state_dict_mismatch(
                model, checkpoint.get('state_dict', checkpoint))
            if problem:
                raise CheckpointMismatchError(
                    f'{filename} does not fit the model of this config: '
                    f'{problem}. Is it the checkpoint of another model or '
                    'config? To load the matching part anyway, pass '
                    '--allow-partial-load (tools/test.py).')
