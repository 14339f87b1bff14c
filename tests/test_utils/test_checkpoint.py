"""mmengine checkpoints load under torch's weights_only unpickler with an
allow-list; anything else is refused."""
import io
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


def test_legacy_format_hostile_checkpoint_is_unsafe_checkpoint_error(
        tmp_path, monkeypatch):
    """torch's scan of unsafe globals reads zip checkpoints only; a legacy
    (non-zip) file is refused with the same error, naming the global."""
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / 'legacy.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'payload': _Payload()},
               path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(path)
    assert 'legacy.pth' in str(info.value)
    assert 'system' in str(info.value)
    assert not osp.exists(tmp_path / MARKER)


def test_legacy_format_benign_checkpoint_loads(tmp_path):
    path = str(tmp_path / 'legacy.pth')
    torch.save({'state_dict': {'w': torch.arange(3.)}}, path,
               _use_new_zipfile_serialization=False)
    loaded = load_checkpoint_safely(path)
    assert torch.equal(loaded['state_dict']['w'], torch.arange(3.))


# --------------------------------------------------------------------------
# every mmengine scheme (URLs, model-zoo names) goes through the safe loader
# --------------------------------------------------------------------------
def test_every_mmengine_scheme_is_a_safe_loader():
    assert CheckpointLoader._schemes, 'mmengine registered no schemes'
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__ == 'vitdense.utils.checkpoint', (
            prefix, loader)


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """A folder served over http on 127.0.0.1 (a free port, this test
    only), and torch hub's download cache in ``tmp_path``."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class QuietHandler(SimpleHTTPRequestHandler):

        def log_message(self, *args):
            pass

    served = tmp_path / 'served'
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs=dict(poll_interval=0.05),
        daemon=True)
    thread.start()
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    monkeypatch.chdir(tmp_path)
    try:
        yield served, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_hostile_checkpoint_over_http_is_refused_and_never_runs(http_root):
    served, url = http_root
    torch.save({'state_dict': {}, 'payload': _Payload()},
               str(served / 'evil.pth'))
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(f'{url}/evil.pth', map_location='cpu')
    assert f'{url}/evil.pth' in str(info.value)
    assert 'system' in str(info.value)
    assert not osp.exists(MARKER)


def test_hostile_pretrained_url_in_init_cfg_is_refused(http_root):
    from mmengine.model import BaseModule
    served, url = http_root
    torch.save({'state_dict': {}, 'payload': _Payload()},
               str(served / 'evil.pth'))
    module = BaseModule(init_cfg=dict(type='Pretrained',
                                      checkpoint=f'{url}/evil.pth'))
    module.linear = torch.nn.Linear(2, 2)
    with pytest.raises(UnsafeCheckpointError):
        module.init_weights()
    assert not osp.exists(MARKER)


def test_checkpoint_over_http_loads_into_the_hub_cache(http_root, tmp_path):
    served, url = http_root
    torch.save(_mmengine_like_checkpoint(), str(served / 'ckpt.pth'))
    checkpoint = _load_checkpoint(f'{url}/ckpt.pth', map_location='cpu')
    assert torch.equal(checkpoint['state_dict']['w'], torch.ones(2))
    assert checkpoint['message_hub']['log_scalars'][
        'train/loss'].current() == 0.5
    assert osp.isfile(tmp_path / 'hub' / 'checkpoints' / 'ckpt.pth')


@pytest.mark.parametrize('scheme, table', [
    ('torchvision://', 'get_torchvision_models'),
    ('modelzoo://', 'get_torchvision_models'),
    ('open-mmlab://', 'get_external_models'),
    ('openmmlab://', 'get_external_models'),
    ('mmcls://', 'get_mmcls_models'),
])
def test_hostile_model_zoo_name_is_refused(http_root, monkeypatch, scheme,
                                           table):
    """Model-zoo names resolve to URLs through mmengine's tables; the file
    behind the URL is loaded safely."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    served, url = http_root
    torch.save({'state_dict': {}, 'payload': _Payload()},
               str(served / 'evil.pth'))
    monkeypatch.setattr(mmengine_checkpoint, table,
                        lambda: {'evil': f'{url}/evil.pth'})
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        _load_checkpoint(f'{scheme}evil', map_location='cpu')
    assert not osp.exists(MARKER)


def test_hostile_checkpoint_in_object_storage_is_refused(
        tmp_path, monkeypatch):
    """``s3://`` / ``petrel://``: the bytes from the storage backend are
    loaded safely."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    torch.save({'state_dict': {}, 'payload': _Payload()}, buffer)

    class Backend:

        def get(self, filename):
            return buffer.getvalue()

    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend',
                        lambda *args, **kwargs: Backend())
    with pytest.raises(UnsafeCheckpointError, match='s3://bucket/evil.pth'):
        _load_checkpoint('s3://bucket/evil.pth', map_location='cpu')
    assert not osp.exists(tmp_path / MARKER)


def test_hostile_checkpoint_from_pavi_is_refused(tmp_path, monkeypatch):
    import shutil
    import sys
    import types
    monkeypatch.chdir(tmp_path)
    src = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': _Payload()}, src)

    class Model:
        name = 'evil.pth'

        def download(self, path):
            shutil.copy(src, path)

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda name: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    with pytest.raises(UnsafeCheckpointError, match='pavi://models/evil'):
        _load_checkpoint('pavi://models/evil', map_location='cpu')
    assert not osp.exists(tmp_path / MARKER)
