"""Load mmengine checkpoints with ``torch.load(weights_only=True)``.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch
2.6 that means ``weights_only=True`` and its own resume checkpoints (which
pickle ``HistoryBuffer`` and numpy arrays in the message hub) fail to load.
Rather than unpickling arbitrary code with ``weights_only=False``, vitdense
replaces mmengine's local-file loader with one that allows exactly the
globals an mmengine training checkpoint needs. A checkpoint whose pickle
calls anything else is refused with :class:`UnsafeCheckpointError`.

One entry needs care: ``HistoryBuffer.__getstate__`` pickles its statistics
methods as ``getattr(HistoryBuffer, 'mean')``. Allowing ``builtins.getattr``
would let a pickle walk from any allowed object to ``eval``, so the name is
bound to :func:`_statistics_getattr`, which resolves only HistoryBuffer's
statistics methods and refuses everything else.
"""
import _codecs
import os.path as osp
import pickle
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['UnsafeCheckpointError', 'checkpoint_safe_globals',
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


def load_checkpoint_safely(filename: str,
                           map_location: Optional[str] = None) -> dict:
    """``torch.load`` with ``weights_only=True`` and the allow-list above."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
        allowed = {entry[1] if isinstance(entry, tuple) else
                   f'{entry.__module__}.{entry.__qualname__}'
                   for entry in checkpoint_safe_globals()}
        refused = [name for name in unsafe if name not in allowed]
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename!r}: its pickle calls '
            f'{", ".join(refused) or "globals"} outside vitdense\'s '
            'allow-list of checkpoint globals, so loading it could run '
            'arbitrary code. If you trust the file, convert it with '
            '`torch.load(path, weights_only=False)` in your own code and '
            'save only tensors.') from error


def install_safe_checkpoint_loader() -> None:
    """Make :func:`load_checkpoint_safely` mmengine's loader for local paths
    (the ``''`` prefix), used by ``load_from``, ``--resume`` and
    ``init_cfg=dict(type='Pretrained')``."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_checkpoint_safely)
