"""mmengine checkpoints load under torch's weights_only unpickler with an
allow-list; anything else is refused."""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import vitdense  # noqa: F401  (installs the safe loader)
from vitdense.utils import UnsafeCheckpointError, load_checkpoint_safely

MARKER = 'vitdense-test-pwned'


class _Payload:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __reduce__(self):
        return (os.system, (f'touch {MARKER}', ))


def _mmengine_like_checkpoint():
    hub = MessageHub.get_instance('test-checkpoint-hub')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_info('iter', 3)
    return {
        'meta': {'epoch': 0, 'iter': 3, 'seed': 0, 'mmengine_version':
                 '0.10.7', 'dataset_meta': {'classes': ('a', 'b')},
                 'cfg': 'model = dict()'},
        'state_dict': {'w': torch.ones(2)},
        'message_hub': hub.state_dict(),
        'rng_state': {'torch': torch.get_rng_state()},
        'ndarray': np.arange(3, dtype=np.int64),
    }


def test_plain_torch_load_fails_on_mmengine_checkpoints(tmp_path):
    """The bug being fixed: torch>=2.6 refuses mmengine 0.10.7's own files."""
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_mmengine_checkpoint_loads_through_mmengine(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    checkpoint = _load_checkpoint(path, map_location='cpu')
    assert checkpoint['meta']['iter'] == 3
    buffers = checkpoint['message_hub']['log_scalars']
    assert isinstance(buffers['train/loss'], HistoryBuffer)
    assert buffers['train/loss'].current() == 0.5
    np.testing.assert_array_equal(checkpoint['ndarray'], [0, 1, 2])


def test_loader_is_registered_for_local_paths():
    assert CheckpointLoader._schemes[''] is load_checkpoint_safely


def test_hostile_checkpoint_is_refused_and_never_runs(tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(path, map_location='cpu')
    assert 'evil.pth' in str(info.value)
    assert 'system' in str(info.value)
    assert not osp.exists(tmp_path / MARKER)


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_checkpoint_safely(str(tmp_path / 'nothing.pth'))


class _GetattrEscape:
    """Pickles to getattr(HistoryBuffer, '__init__'): the first step of a
    walk from an allowed class to its module globals."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'walk.pth')
    torch.save({'x': _GetattrEscape()}, path)
    with pytest.raises(UnsafeCheckpointError, match='walk.pth'):
        load_checkpoint_safely(path)
