"""MT-AdamW: AdamW with Task-Balanced Gradient Normalization.

Uni-Perceiver v2 (Li et al., CVPR 2023, arXiv 2211.09808), Sec.
"Task-Balanced Gradient Normalization" ("MT-AdamW" in arXiv v1). With unmixed
sampling every step sees the gradient of one task k, drawn with probability
s_k. The paper normalises that gradient and lets each task contribute to the
AdamW moments in inverse proportion to how often it is drawn:

    g_t = omega_k * grad / ||grad||
    m_t = beta1 * m_{t-1} + (1 - beta1) / s_k * g_t
    v_t = beta2 * v_{t-1} + (1 - beta2) / s_k * g_t ** 2

(as the project's reference notes give it, where beta weighs the new sample;
the paper's own text could not be read here; torch's convention, beta the
weight of the history, is used), followed
by AdamW's bias correction and decoupled weight decay. omega_k = 1 unless
``task_grad_weights`` says otherwise. No official code exists; written here
because torch's AdamW cannot scale the first and second moment contributions
differently.
"""
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch.optim import Optimizer

from vitdense.registry import OPTIMIZERS

__all__ = ['MTAdamW']


def _check_weights(weights: Dict[str, float], name: str,
                   allow_zero: bool = False) -> Dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f'MTAdamW: {name} must be a non-empty dict '
                         f'task name -> weight, got {weights!r}')
    bad = {k: v for k, v in weights.items()
           if not (float(v) >= 0 if allow_zero else float(v) > 0)}
    if bad or not any(float(v) > 0 for v in weights.values()):
        rule = '>= 0 with one positive' if allow_zero else 'positive'
        raise ValueError(
            f'MTAdamW: {name} must be {rule}, got {dict(weights)}')
    return {k: float(v) for k, v in weights.items()}


@OPTIMIZERS.register_module()
class MTAdamW(Optimizer):
    """AdamW with Task-Balanced Gradient Normalization (Uni-Perceiver v2).

    Call :meth:`set_task` before every :meth:`step` (``UnmixedTrainLoop``
    does it). ``||grad||`` is the global L2 norm over every parameter, in all
    param groups, that has a gradient in this step (under DDP the gradients
    are already all-reduced, so the norm is the global one; with sharded
    optimizers such as ZeRO/FSDP it would be the shard's). The step count
    used for bias correction is per parameter, counting the steps in which
    it had a gradient, as torch's AdamW.

    Args:
        params: Parameters or param groups (mmengine's paramwise
            constructor works as for AdamW).
        lr, betas, eps, weight_decay: As :class:`torch.optim.AdamW`.
        task_sampling_weights (dict): Task name -> sampling weight of the
            unmixed loop; normalised to s_k (sum 1). A task of weight 0 is
            never drawn (the loop's single-task baselines).
        task_grad_weights (dict, optional): Task name -> omega_k; tasks not
            named get 1.
    """

    def __init__(self,
                 params: Iterable,
                 lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8,
                 weight_decay: float = 1e-2,
                 *,
                 task_sampling_weights: Dict[str, float],
                 task_grad_weights: Optional[Dict[str, float]] = None):
        if not 0.0 <= lr:
            raise ValueError(f'MTAdamW: invalid lr {lr}')
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f'MTAdamW: invalid betas {betas}')
        if not 0.0 <= eps:
            raise ValueError(f'MTAdamW: invalid eps {eps}')
        weights = _check_weights(task_sampling_weights,
                                 'task_sampling_weights', allow_zero=True)
        # a task of weight 0 is never drawn (a single-task baseline)
        weights = {k: v for k, v in weights.items() if v > 0}
        total = sum(weights.values())
        self.task_sampling_weights = {k: v / total for k, v in weights.items()}
        grad_weights = _check_weights(task_grad_weights,
                                      'task_grad_weights') \
            if task_grad_weights is not None else {}
        unknown = sorted(set(grad_weights) - set(weights))
        if unknown:
            raise ValueError(
                f'MTAdamW: task_grad_weights name tasks {unknown} that are '
                f'not in task_sampling_weights {sorted(weights)}')
        self.task_grad_weights = {k: grad_weights.get(k, 1.0) for k in weights}
        self.task: Optional[str] = None
        super().__init__(
            params,
            dict(lr=lr, betas=tuple(betas), eps=eps,
                 weight_decay=weight_decay))

    def set_task(self, task: str) -> None:
        """Select the task whose gradient the next :meth:`step` applies."""
        if task not in self.task_sampling_weights:
            raise KeyError(
                f'MTAdamW.set_task: unknown task {task!r}; '
                f'task_sampling_weights has {sorted(self.task_sampling_weights)}'
            )
        self.task = task

    @torch.no_grad()
    def step(self, closure=None):
        """One MT-AdamW step with the gradient of the current task."""
        if self.task is None:
            raise RuntimeError(
                'MTAdamW.step: no task set; call optimizer.set_task(name) '
                'before each step (UnmixedTrainLoop does, with mixed=False)')
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [
            p for group in self.param_groups for p in group['params']
            if p.grad is not None
        ]
        if not params:
            return loss
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError('MTAdamW does not support sparse gradients')
        norm = torch.linalg.vector_norm(
            torch.stack([
                torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32)
                for p in params
            ]))
        # zero gradients stay zero
        scale = self.task_grad_weights[self.task] / norm.clamp_min(
            torch.finfo(torch.float32).tiny)
        inv_s = 1.0 / self.task_sampling_weights[self.task]
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad * scale.to(p.grad.device, p.grad.dtype)
                state = self.state[p]
                if not state:
                    state['step'] = torch.tensor(0.0)
                    state['exp_avg'] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                state['step'] += 1
                step = state['step'].item()
                p.mul_(1 - group['lr'] * group['weight_decay'])
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                exp_avg.mul_(beta1).add_(grad, alpha=(1 - beta1) * inv_s)
                exp_avg_sq.mul_(beta2).addcmul_(grad,
                                                grad,
                                                value=(1 - beta2) * inv_s)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(
                    group['eps'])
                p.addcdiv_(exp_avg,
                           denom,
                           value=-group['lr'] / bias_correction1)
        return loss
