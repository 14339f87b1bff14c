"""Stop a diverging run at once, and never save non-finite weights.

mmengine has no such hook (its ``EarlyStoppingHook`` watches validation
metrics), and mmdet's ``CheckInvalidLossHook`` only asserts the total loss
every 50 iterations, after the optimizer has already stepped on it. This hook
raises :class:`NonFiniteLossError` naming the iteration and what went wrong:

* the loss terms that are NaN or Inf, checked as the model returns them,
  before ``backward()`` and the optimizer step;
* a head whose outputs are NaN or Inf, before its loss code runs: matching
  and sampling code fails on such predictions with errors of its own (mmdet's
  ``HungarianAssigner`` raises scipy's "matrix contains invalid numeric
  entries" in DINO and Relation-DETR before any loss term exists);
* a checkpoint whose weights hold NaN or Inf, refused in
  ``before_save_checkpoint`` before anything is written.

Under DDP the ranks agree on each check (one all-reduce of a flag), so all of
them stop together.
"""
from typing import Dict, Iterator, List, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from vitdense.registry import HOOKS

__all__ = ['NonFiniteCheckHook', 'NonFiniteLossError']

#: How many offending names a message lists before "and N more".
MAX_NAMES = 8
ADVICE = ('Lower the learning rate or clip the gradients '
          '(optim_wrapper.clip_grad), then resume from the last checkpoint.')


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss term, a head's output or the weights are
    NaN or Inf."""


def _name_list(names: List[str]) -> str:
    shown = ', '.join(names[:MAX_NAMES])
    if len(names) > MAX_NAMES:
        shown += f' and {len(names) - MAX_NAMES} more'
    return shown


def _term_value(value) -> Optional[torch.Tensor]:
    """A loss term reduced as ``BaseModel.parse_losses`` reduces it."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean()
    if (isinstance(value, (list, tuple)) and value
            and all(isinstance(v, torch.Tensor) for v in value)):
        return sum(v.detach().float().mean() for v in value)
    return None


def _float_tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value.detach()
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _float_tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _float_tensors(item)


def _agreed(diverged: torch.Tensor) -> bool:
    """Whether any rank diverged (``diverged``: this rank's 0/1 flag)."""
    diverged = diverged.float()
    all_reduce(diverged, op='max')
    return bool(diverged.item())


def _diverged(iteration: int, what: str) -> NonFiniteLossError:
    return NonFiniteLossError(
        f'Training diverged at iteration {iteration}: {what}. Stopped before '
        'the optimizer step; no checkpoint was written for this iteration. ' +
        ADVICE)


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Raise :class:`NonFiniteLossError` when training diverges.

    The loss terms are the entries of the model's ``mode='loss'`` output whose
    key contains ``'loss'`` (those ``parse_losses`` sums into the total), each
    reduced as ``parse_losses`` reduces it. The heads are the model's direct
    children whose name ends with ``head`` (``bbox_head``, ``rpn_head``,
    ``decode_head``...); their outputs are checked when they are called as
    modules in training mode.
    """

    # Before the other hooks' before_save_checkpoint and after_train_iter.
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._handles = []

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model

        def check_losses(module, args, kwargs, output):
            if kwargs.get('mode') == 'loss' and isinstance(output, dict):
                self.check_losses(output, runner.iter + 1)

        def check_head(name):

            def check(module, args, output):
                if module.training:
                    self.check_head_outputs(name, output, runner.iter + 1)

            return check

        self._handles = [
            model.register_forward_hook(check_losses, with_kwargs=True)
        ] + [
            child.register_forward_hook(check_head(name))
            for name, child in model.named_children() if name.endswith('head')
        ]

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def check_losses(losses: Dict, iteration: int) -> None:
        """Raise if a loss term of ``losses`` (a model's loss dict) is not
        finite."""
        terms = {}
        for name, value in losses.items():
            reduced = _term_value(value)
            if 'loss' in name and reduced is not None:
                terms[name] = reduced
        if not terms:
            return
        finite = torch.isfinite(torch.stack(list(terms.values())))
        if not _agreed(~finite.all()):
            return
        bad = [
            f'{name}={value.item():g}'
            for (name, value), ok in zip(terms.items(), finite.tolist())
            if not ok
        ]
        raise _diverged(
            iteration, f'non-finite loss terms: {_name_list(bad)}'
            if bad else 'a non-finite loss term on another rank')

    @staticmethod
    def check_head_outputs(name: str, outputs, iteration: int) -> None:
        """Raise if a tensor in ``outputs`` (head ``name``'s) is not
        finite."""
        flags = [torch.isfinite(t).all() for t in _float_tensors(outputs)]
        if not flags:
            return
        here = ~torch.stack(flags).all()
        if not _agreed(here):
            return
        raise _diverged(
            iteration, f'the outputs of `{name}` hold NaN or Inf' +
            (', so its loss terms cannot be computed'
             if here else ' on another rank'))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = [
            name for name, value in checkpoint['state_dict'].items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ]
        if bad:
            raise NonFiniteLossError(
                'Refusing to save the checkpoint at iteration '
                f"{checkpoint['meta']['iter']}: the weights hold NaN or Inf "
                f'in {_name_list(bad)}; training diverged. ' + ADVICE)
