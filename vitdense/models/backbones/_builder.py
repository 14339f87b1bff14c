"""Plumbing shared by the vitdense backbones.

One place for what every backbone family needs besides its own layers, in
the manner of timm's ``_builder.load_pretrained(model, filter_fn=...)``:
``arch`` lookup (:func:`resolve_arch`), unwrapping a training checkpoint to
the backbone's keys (:func:`unwrap_checkpoint`), strict loading that names
what does not match (:func:`load_state_dict_strictly`,
:func:`load_pretrained`), the Swin-style initialisation
(:func:`init_linear_and_layer_norm`), ``frozen_stages``/``norm_eval``
(:class:`FrozenStagesMixin`) and gradient checkpointing
(:func:`maybe_checkpoint`). Each family keeps its key mapping (its
``filter_fn``) in its own file.
"""
from typing import Callable, Collection, Dict, List, Mapping, Optional, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vitdense.utils.checkpoint import compare_state_dicts

__all__ = [
    'resolve_arch', 'unwrap_checkpoint', 'keep_own',
    'load_state_dict_strictly', 'load_pretrained',
    'init_linear_and_layer_norm', 'FrozenStagesMixin', 'maybe_checkpoint'
]

#: ``filter_fn(checkpoint, model) -> state dict``: a family's key mapping
FilterFn = Callable[[Mapping, nn.Module], Mapping[str, torch.Tensor]]
#: how many keys an error message lists per kind of mismatch
_SHOWN = 10


def resolve_arch(arch: Optional[Union[str, Mapping]],
                 zoo: Mapping[str, Mapping],
                 required_keys: Collection[str] = (),
                 family: str = 'backbone') -> dict:
    """A copy of ``zoo[arch.lower()]``, or of the ``arch`` dict itself.

    ``None`` gives ``{}`` (the caller's defaults apply).

    Raises:
        KeyError: an unknown name (the message lists the zoo), or a dict
            that lacks one of ``required_keys``.
    """
    if arch is None:
        return {}
    if isinstance(arch, str):
        if arch.lower() not in zoo:
            raise KeyError(f'Unknown {family} arch {arch!r}; choose from '
                           f'{sorted(zoo)} or pass a dict.')
        arch = zoo[arch.lower()]
    arch = dict(arch)
    missing = set(required_keys) - set(arch)
    if missing:
        raise KeyError(f'{family} arch dict lacks {sorted(missing)}')
    return arch


def unwrap_checkpoint(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """The backbone part of a checkpoint: unwrap ``state_dict``/``model``/
    ``module`` (as classification ``main.py`` and mm* training save), drop a
    ``module.`` prefix and, in a detector or segmentor checkpoint (one with
    ``backbone.`` keys), keep only the ``backbone.`` keys, without prefix."""
    state_dict = checkpoint
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]
    state_dict = {
        k[7:] if k.startswith('module.') else k: v
        for k, v in state_dict.items()
    }
    if any(k.startswith('backbone.') for k in state_dict):
        state_dict = {
            k[9:]: v
            for k, v in state_dict.items() if k.startswith('backbone.')
        }
    return state_dict


def keep_own(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
             keep: Callable[[str], bool]) -> Dict[str, torch.Tensor]:
    """``state_dict`` completed with ``model``'s own tensors for the keys it
    lacks that ``keep(key)`` accepts: those keep their initialisation while
    the load stays strict for every other key (e.g. the output norms an
    official classification checkpoint does not have)."""
    own = {
        k: v
        for k, v in model.state_dict().items()
        if k not in state_dict and keep(k)
    }
    return {**state_dict, **own}


def load_state_dict_strictly(model: nn.Module,
                             state_dict: Mapping[str, torch.Tensor],
                             source: str = 'checkpoint') -> None:
    """``model.load_state_dict(state_dict, strict=True)``, checked first.

    Raises:
        RuntimeError: before anything is loaded, when a key is missing or
            unexpected or a shape differs; the message counts each kind
            ("missing", "unexpected", "shape mismatch") and names the keys
            (``Missing key(s)``, ``Unexpected key(s)``, ``size mismatch``
            lines, as ``torch`` does).
    """
    missing, unexpected, mismatched = map(
        sorted, compare_state_dicts(model.state_dict(), state_dict))
    if missing or unexpected or mismatched:
        counts = [
            f'{len(found)} {kind}'
            for kind, found in (('missing', missing), ('unexpected',
                                                       unexpected),
                                ('shape mismatch(es)', mismatched)) if found
        ]
        lines = [
            f'{type(model).__name__}: {source} does not match the model '
            f'({", ".join(counts)}; {len(state_dict)} keys given)'
        ]
        if missing:
            lines.append(f'Missing key(s): {missing[:_SHOWN]}')
        if unexpected:
            lines.append(f'Unexpected key(s): {unexpected[:_SHOWN]}')
        lines += [
            f'size mismatch for {k}: {src} in the {source}, {dst} in the model'
            for k, src, dst in mismatched[:_SHOWN]
        ]
        raise RuntimeError('\n  '.join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_pretrained(model: nn.Module, filter_fn: FilterFn) -> bool:
    """Load ``model.init_cfg = dict(type='Pretrained', checkpoint=...)``.

    The file is read by mmengine's ``CheckpointLoader`` (every scheme of
    which vitdense makes load with ``weights_only=True``, see
    :mod:`vitdense.utils.checkpoint`), mapped by the family's
    ``filter_fn(checkpoint, model)`` and loaded by
    :func:`load_state_dict_strictly`, so a checkpoint of another arch or
    model raises naming the keys instead of loading nothing quietly.

    Returns:
        bool: False when ``init_cfg`` asks for no pretrained weights.
    """
    init_cfg = model.init_cfg
    if init_cfg is None or init_cfg.get('type') != 'Pretrained':
        return False
    logger = MMLogger.get_current_instance()
    path = init_cfg['checkpoint']
    checkpoint = CheckpointLoader.load_checkpoint(path,
                                                  map_location='cpu',
                                                  logger=logger)
    load_state_dict_strictly(model, filter_fn(checkpoint, model), source=path)
    logger.info(f'{type(model).__name__}: loaded {path}')
    return True


def init_linear_and_layer_norm(model: nn.Module) -> None:
    """The official Swin-style init: trunc-normal (std 0.02) Linear weights,
    zero biases, unit LayerNorms; other layers keep PyTorch's defaults."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0)


class FrozenStagesMixin:
    """``frozen_stages`` and ``norm_eval`` for an ``nn.Module`` backbone.

    The class lists what ``frozen_stages`` freezes in :meth:`_frozen_parts`
    and calls :meth:`_freeze_stages` at the end of ``__init__``; ``train()``
    then keeps those parts (and, with ``norm_eval``, every BatchNorm) in
    eval mode, as mmdet's ResNet does.
    """
    frozen_stages: int = -1
    norm_eval: bool = False

    def _frozen_parts(self) -> List[Union[nn.Module, nn.Parameter, None]]:
        """Modules and parameters frozen by ``frozen_stages >= 0``; None
        entries (parts not built) are skipped."""
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for part in self._frozen_parts():
            if isinstance(part, nn.Module):
                part.eval()
                part.requires_grad_(False)
            elif part is not None:
                part.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def maybe_checkpoint(fn: Callable, *args, enabled: bool):
    """``fn(*args)``, through the non-reentrant
    ``torch.utils.checkpoint.checkpoint`` when ``enabled`` and autograd is
    recording.

    The gate is ``torch.is_grad_enabled()``, not ``args[0].requires_grad``:
    behind frozen stages the input needs no gradient while ``fn``'s
    parameters do, and a gate on the input would silently stop
    checkpointing there; the non-reentrant checkpoint gives parameter
    gradients whatever the inputs.
    """
    if enabled and torch.is_grad_enabled():
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
