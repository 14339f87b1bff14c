"""Load checkpoints with ``torch.load(weights_only=True)``, from every source.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch
2.6 that means ``weights_only=True`` and its own resume checkpoints (which
pickle ``HistoryBuffer`` and numpy arrays in the message hub) fail to load.
Its URL loaders (``http(s)://``, ``torchvision://``, ``open-mmlab://``,
``mmcls://``) go through ``torch.hub.load_state_dict_from_url``, which
unpickles with ``weights_only=False``, so a hostile URL runs code. Rather
than unpickling arbitrary code, vitdense replaces every mmengine checkpoint
scheme with one that fetches the file as mmengine does (same cache, rank 0
first) and loads it with ``weights_only=True`` and exactly the globals an
mmengine training checkpoint needs. A checkpoint whose pickle calls anything
else is refused with :class:`UnsafeCheckpointError`, before any of it runs.

One entry needs care: ``HistoryBuffer.__getstate__`` pickles its statistics
methods as ``getattr(HistoryBuffer, 'mean')``. Allowing ``builtins.getattr``
would let a pickle walk from any allowed object to ``eval``, so the name is
bound to :func:`_statistics_getattr`, which resolves only HistoryBuffer's
statistics methods and refuses everything else.
"""
import _codecs
import io
import os
import os.path as osp
import pickle
import re
import warnings
from tempfile import TemporaryDirectory
from typing import IO, Callable, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['UnsafeCheckpointError', 'checkpoint_safe_globals',
           'compare_state_dicts',
           'load_checkpoint_safely', 'install_safe_checkpoint_loader']


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle references globals outside the allow-list."""


def _statistics_getattr(owner, name: str):
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods."""
    if owner is HistoryBuffer and name in _statistics_names():
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint; only '
        "HistoryBuffer's statistics methods are.")


def _statistics_names() -> set:
    return {'min', 'max', 'mean', 'current'} | set(
        HistoryBuffer._statistics_methods)


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals an mmengine checkpoint may reference: the message hub's
    :class:`HistoryBuffer` and the numpy arrays/scalars it holds."""
    numpy_dtypes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64,
        np.complex64, np.complex128, np.str_)]
    return [HistoryBuffer, (_statistics_getattr, 'builtins.getattr'),
            np.ndarray, np.dtype, np._core.multiarray._reconstruct,
            np._core.multiarray.scalar, _codecs.encode, *numpy_dtypes]


def _refused_globals(f: Union[str, IO[bytes]],
                     error: pickle.UnpicklingError) -> List[str]:
    """The globals of ``f``'s pickle outside the allow-lists, read without
    unpickling. torch lists them for zip checkpoints only; for the legacy
    (``_use_new_zipfile_serialization=False``) format, the first one, which
    torch's refusal names (``... GLOBAL posix.system ...``)."""
    if not isinstance(f, str):
        f.seek(0)
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except ValueError:  # not a zip checkpoint
        return re.findall(r'GLOBAL ([\w.]+)', str(error))[:1]
    allowed = {entry[1] if isinstance(entry, tuple) else
               f'{entry.__module__}.{entry.__qualname__}'
               for entry in checkpoint_safe_globals()}
    return sorted(name for name in unsafe if name not in allowed)


def _load_safely(f: Union[str, IO[bytes]], name: str,
                 map_location: Optional[str]) -> dict:
    """``torch.load(f, weights_only=True)`` with the allow-list; ``name``
    is the file or URL that errors report."""
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(f, error)
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {name!r}: its pickle calls '
            f'{", ".join(refused) or "globals"} outside vitdense\'s '
            'allow-list of checkpoint globals, so loading it could run '
            'arbitrary code. If you trust the file, convert it with '
            '`torch.load(path, weights_only=False)` in your own code and '
            'save only tensors.') from error


def load_checkpoint_safely(filename: str,
                           map_location: Optional[str] = None) -> dict:
    """``torch.load`` with ``weights_only=True`` and the allow-list above;
    mmengine's loader for local paths."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return _load_safely(filename, filename, map_location)


def _download(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` into ``model_dir`` (default: torch hub's
    ``<hub dir>/checkpoints``, where mmengine's ``load_url`` caches) unless
    it is there already; the local path."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached_file = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached_file):
        torch.hub.download_url_to_file(url, cached_file, progress=True)
    return cached_file


def load_from_http_safely(filename: str,
                          map_location: Optional[str] = None,
                          model_dir: Optional[str] = None) -> dict:
    """mmengine's ``load_from_http`` (rank 0 downloads first, the others
    read its cached file), loading with :func:`load_checkpoint_safely`."""
    rank, world_size = get_dist_info()
    if rank == 0:
        cached_file = _download(filename, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached_file = _download(filename, model_dir)
    return _load_safely(cached_file, filename, map_location)


def load_from_pavi_safely(filename: str,
                          map_location: Optional[str] = None) -> dict:
    """mmengine's ``load_from_pavi`` with a safe load."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(
            'Please install pavi to load checkpoint from modelcloud.'
        ) from None
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded_file = osp.join(tmp_dir, model.name)
        model.download(downloaded_file)
        return _load_safely(downloaded_file, filename, map_location)


def load_from_ceph_safely(filename: str,
                          map_location: Optional[str] = None,
                          backend: str = 'petrel') -> dict:
    """mmengine's ``load_from_ceph`` (``s3://``, ``petrel://``) with a safe
    load."""
    file_backend = mmengine_checkpoint.get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return _load_safely(buffer, filename, map_location)


def load_from_torchvision_safely(filename: str,
                                 map_location: Optional[str] = None) -> dict:
    """mmengine's ``load_from_torchvision`` (``torchvision://``,
    ``modelzoo://``): the model's URL, loaded safely."""
    if filename.startswith('modelzoo://'):
        warnings.warn(
            'The URL scheme of "modelzoo://" is deprecated, please '
            'use "torchvision://" instead', DeprecationWarning)
        model_name = filename[len('modelzoo://'):]
    else:
        model_name = filename[len('torchvision://'):]
    url = mmengine_checkpoint.get_torchvision_models()[model_name]
    return load_from_http_safely(url, map_location=map_location)


def load_from_openmmlab_safely(filename: str,
                               map_location: Optional[str] = None) -> dict:
    """mmengine's ``load_from_openmmlab`` (``open-mmlab://``,
    ``openmmlab://``): the model's URL or file under mmengine's home,
    loaded safely."""
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else \
        'openmmlab://'
    model_name = filename[len(prefix):]
    deprecated = mmengine_checkpoint.get_deprecated_model_names()
    if model_name in deprecated:
        warnings.warn(
            f'{prefix}{model_name} is deprecated in favor '
            f'of {prefix}{deprecated[model_name]}', DeprecationWarning)
        model_name = deprecated[model_name]
    model_url = mmengine_checkpoint.get_external_models()[model_name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http_safely(model_url, map_location=map_location)
    return load_checkpoint_safely(
        osp.join(mmengine_checkpoint._get_mmengine_home(), model_url),
        map_location)


def load_from_mmcls_safely(filename: str,
                           map_location: Optional[str] = None) -> dict:
    """mmengine's ``load_from_mmcls`` (``mmcls://``) with a safe load."""
    url = mmengine_checkpoint.get_mmcls_models()[filename[len('mmcls://'):]]
    checkpoint = load_from_http_safely(url, map_location=map_location)
    return mmengine_checkpoint._process_mmcls_checkpoint(checkpoint)


#: mmengine 0.10.7's checkpoint schemes and their safe replacements
SAFE_SCHEMES = (
    ('', load_checkpoint_safely),
    (('http://', 'https://'), load_from_http_safely),
    ('pavi://', load_from_pavi_safely),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_ceph_safely),
    (('modelzoo://', 'torchvision://'), load_from_torchvision_safely),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab_safely),
    ('mmcls://', load_from_mmcls_safely),
)


def compare_state_dicts(expected: Mapping, given: Mapping
                        ) -> Tuple[List[str], List[str], List[tuple]]:
    """How ``given`` differs from ``expected`` (a model's state dict):
    its missing keys (in ``expected``'s order), its unexpected keys (in
    ``given``'s order) and ``(key, given shape, expected shape)`` of the
    tensors whose shapes differ."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [(k, tuple(given[k].shape), tuple(v.shape))
                  for k, v in expected.items()
                  if k in given and hasattr(given[k], 'shape')
                  and tuple(given[k].shape) != tuple(v.shape)]
    return missing, unexpected, mismatched


def install_safe_checkpoint_loader() -> None:
    """Make the safe loaders mmengine's loaders for every scheme (local
    paths, URLs and model-zoo names), used by ``load_from``, ``--resume`` and
    ``init_cfg=dict(type='Pretrained')``."""
    for prefixes, loader in SAFE_SCHEMES:
        CheckpointLoader.register_scheme(prefixes=prefixes, force=True)(
            loader)
