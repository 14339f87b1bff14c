"""The one reader and writer of the checkpoint converters.

Converters are where downloaded third-party files enter vitdense, so they
never unpickle objects: ``.pth``/``.bin`` files are read by
:func:`vitdense.utils.load_checkpoint_safely` (``torch.load(weights_only=
True)`` with vitdense's allow-list of checkpoint globals), ``.safetensors``
files by the ``safetensors`` package, and an HF model folder (``config.json``
next to ``model.safetensors`` or ``pytorch_model.bin``) through its weight
file. Each converter checks that the file has its family's key layout
(:func:`check_layout`) before it maps anything.
"""
import os
import os.path as osp
from argparse import ArgumentParser
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Mapping, Sequence

import torch

from vitdense.models.backbones._builder import unwrap_checkpoint
from vitdense.utils.checkpoint import (UnsafeCheckpointError,
                                       load_checkpoint_safely)

__all__ = [
    'CheckpointLayoutError', 'PickledObjectsError', 'read_checkpoint',
    'open_checkpoint', 'backbone_state_dict', 'check_layout',
    'save_state_dict', 'exit_on_refusal', 'converter_main'
]

#: weight files of an HF model folder, in order of preference
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


class CheckpointLayoutError(ValueError):
    """A checkpoint's keys are not the layout a converter expects."""


class PickledObjectsError(UnsafeCheckpointError, RuntimeError):
    """A converter's input holds pickled objects besides tensors.

    Also a ``RuntimeError``, what ``relation_detr2vitdense.py`` raised for
    such files before all converters shared this reader."""


def read_checkpoint(src: str) -> dict:
    """The tensors and plain containers of ``src``: a ``.pth``/``.bin``
    file, a ``.safetensors`` file or an HF model folder.

    Raises:
        PickledObjectsError: ``src``'s pickle calls globals outside the
            allow-list (nothing of it is run).
        FileNotFoundError: no such file, or a folder without HF weights.
    """
    if osp.isdir(src):
        found = [f for f in HF_WEIGHT_FILES if osp.isfile(osp.join(src, f))]
        if not found:
            raise FileNotFoundError(
                f'{src} holds none of {HF_WEIGHT_FILES} (sharded HF '
                'checkpoints are not supported)')
        src = osp.join(src, found[0])
    if src.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(
                f'reading {src} needs the safetensors package '
                '(pip install safetensors); or convert the '
                'pytorch_model.bin of the same model') from None
        return load_file(src, device='cpu')
    try:
        return load_checkpoint_safely(src, map_location='cpu')
    except UnsafeCheckpointError as err:
        raise PickledObjectsError(
            f'{src} holds pickled Python objects besides tensors, and the '
            f'converters do not unpickle them: {err}') from None


@contextmanager
def open_checkpoint(src: str) -> Iterator[dict]:
    """``with open_checkpoint(src) as checkpoint:`` reads ``src`` with
    :func:`read_checkpoint`; a :class:`CheckpointLayoutError` raised in the
    block names ``src``."""
    checkpoint = read_checkpoint(src)
    try:
        yield checkpoint
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{src}: {err}') from None


def backbone_state_dict(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """Unwrap ``state_dict``/``model``/``module``, drop ``module.`` and keep
    the ``backbone.`` part of a detector or segmentor checkpoint (the
    backbones' own :func:`~vitdense.models.backbones._builder.
    unwrap_checkpoint`); anything but a mapping is refused."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointLayoutError(
            f'holds a {type(checkpoint).__name__}, not a state dict')
    return unwrap_checkpoint(checkpoint)


def check_layout(state_dict: Mapping,
                 layouts: Dict[str, Sequence[str]]) -> str:
    """The name of the first of ``layouts`` (name -> keys that must all be
    present) that ``state_dict`` has; :class:`CheckpointLayoutError` naming
    the expected keys and a sample of the found ones otherwise."""
    for name, keys in layouts.items():
        if all(k in state_dict for k in keys):
            return name
    expected = '; or '.join(f'{name}: {list(keys)}'
                            for name, keys in layouts.items())
    raise CheckpointLayoutError(
        f'not a {" or ".join(layouts)} checkpoint: expected the keys '
        f'{expected}; found {len(state_dict)} keys, e.g. '
        f'{sorted(state_dict)[:5]}')


def save_state_dict(state_dict: Mapping, dst: str) -> None:
    """Write ``{'state_dict': state_dict}`` to ``dst``, creating folders."""
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save({'state_dict': state_dict}, dst)


@contextmanager
def exit_on_refusal(parser: ArgumentParser) -> Iterator[None]:
    """In a converter's ``main``: a refused or missing input ends the
    program with status 1 and the reason instead of a traceback."""
    try:
        yield
    except (CheckpointLayoutError, UnsafeCheckpointError,
            FileNotFoundError) as err:
        parser.exit(1, f'{parser.prog}: error: {err}\n')


def converter_main(doc: str, convert: Callable[[str, str], Mapping],
                   family: str) -> None:
    """The command line of a ``SRC DST`` converter in
    ``tools/model_converters/``: ``convert(src, dst)`` returns the written
    state dict; a refused input exits with status 1 and the reason."""
    parser = ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument('src', help=f'official {family} checkpoint')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args()
    with exit_on_refusal(parser):
        state_dict = convert(args.src, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')
