"""MTAdamW (Task-Balanced Gradient Normalization, Uni-Perceiver v2): equals
a hand-written reference of the paper's update; with one task, s_k = 1 and
unit-norm gradients it is torch's AdamW."""
import io
import math

import pytest
import torch

from vitdense.engine.optimizers import MTAdamW
from vitdense.registry import OPTIMIZERS


def _params():
    torch.manual_seed(0)
    return [
        torch.nn.Parameter(torch.randn(3, 2)),
        torch.nn.Parameter(torch.randn(4)),
        torch.nn.Parameter(torch.randn(2, 2))
    ]


def _reference(values, grads_per_step, tasks, groups, s, omega, betas, eps):
    """The paper's update written out element by element (plain floats):
    g = omega_k * grad / ||grad|| (norm over all parameters of the step),
    m = b1 m + (1 - b1) / s_k g, v = b2 v + (1 - b2) / s_k g^2, AdamW bias
    correction and decoupled weight decay."""
    b1, b2 = betas
    values = [list(map(float, v.flatten())) for v in values]
    m = [[0.0] * len(v) for v in values]
    v2 = [[0.0] * len(v) for v in values]
    for t, (grads, task) in enumerate(zip(grads_per_step, tasks), start=1):
        flat = [list(map(float, g.flatten())) for g in grads]
        norm = math.sqrt(sum(x * x for g in flat for x in g))
        for i, (lr, wd) in enumerate(groups):
            for j in range(len(values[i])):
                g = omega[task] * flat[i][j] / norm
                m[i][j] = b1 * m[i][j] + (1 - b1) / s[task] * g
                v2[i][j] = b2 * v2[i][j] + (1 - b2) / s[task] * g * g
                values[i][j] *= 1 - lr * wd
                m_hat = m[i][j] / (1 - b1**t)
                v_hat = v2[i][j] / (1 - b2**t)
                values[i][j] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return values


def test_mt_adamw_matches_reference_on_two_tasks():
    params = _params()
    start = [p.detach().clone() for p in params]
    groups = [(0.1, 0.05), (0.03, 0.0), (0.02, 0.3)]
    opt = MTAdamW([
        dict(params=[p], lr=lr, weight_decay=wd)
        for p, (lr, wd) in zip(params, groups)
    ],
                  betas=(0.8, 0.95),
                  eps=1e-3,
                  task_sampling_weights=dict(det=3.0, cls=1.0),
                  task_grad_weights=dict(cls=2.0))
    torch.manual_seed(1)
    tasks = ['det', 'cls', 'cls', 'det', 'det', 'cls']
    grads_per_step = []
    for task in tasks:
        grads = [torch.randn_like(p) * 5 for p in params]
        grads_per_step.append(grads)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.set_task(task)
        opt.step()
    expected = _reference(start,
                          grads_per_step,
                          tasks,
                          groups,
                          s=dict(det=0.75, cls=0.25),
                          omega=dict(det=1.0, cls=2.0),
                          betas=(0.8, 0.95),
                          eps=1e-3)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach().flatten(),
                                   torch.tensor(e, dtype=p.dtype),
                                   rtol=1e-5,
                                   atol=1e-6)
    # the task weights matter: with equal weights the result differs
    assert not torch.allclose(params[0].detach().flatten(),
                              torch.tensor(
                                  _reference(start,
                                             grads_per_step,
                                             tasks,
                                             groups,
                                             s=dict(det=0.5, cls=0.5),
                                             omega=dict(det=1.0, cls=1.0),
                                             betas=(0.8, 0.95),
                                             eps=1e-3)[0]),
                              atol=1e-4)


def test_mt_adamw_one_task_is_adamw_on_normalised_grads():
    params = _params()
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]

    def groups(ps):
        return [
            dict(params=ps[:2]),
            dict(params=ps[2:], lr=0.05, weight_decay=0.0)
        ]

    opt = OPTIMIZERS.build(
        dict(type='MTAdamW',
             params=groups(params),
             lr=0.01,
             weight_decay=0.1,
             task_sampling_weights=dict(only=4.0)))
    ref = torch.optim.AdamW(groups(twins), lr=0.01, weight_decay=0.1)
    torch.manual_seed(2)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        for p, q, g in zip(params, twins, grads):
            p.grad = g * 7.0
            q.grad = g / norm
        opt.set_task('only')
        opt.step()
        ref.step()
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q)


def test_mt_adamw_state_dict_resumes():
    params = _params()
    opt = MTAdamW(params, task_sampling_weights=dict(a=1.0, b=1.0))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.set_task('a')
    opt.step()
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = MTAdamW(twins, task_sampling_weights=dict(a=1.0, b=1.0))
    buffer = io.BytesIO()  # as a checkpoint file
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    for ps, o in ((params, opt), (twins, resumed)):
        for p in ps:
            p.grad = torch.full_like(p, -2.0)
        o.set_task('b')
        o.step()
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q)
    assert resumed.state[twins[0]]['step'].item() == 2


def test_mt_adamw_task_of_sampling_weight_zero_is_never_drawn():
    opt = MTAdamW(_params(), task_sampling_weights=dict(det=2.0, cls=0.0))
    assert opt.task_sampling_weights == dict(det=1.0)
    with pytest.raises(KeyError, match="unknown task 'cls'"):
        opt.set_task('cls')


def test_mt_adamw_step_without_task_raises():
    params = _params()
    opt = MTAdamW(params, task_sampling_weights=dict(det=1.0, cls=1.0))
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match='no task set'):
        opt.step()
    with pytest.raises(KeyError, match="unknown task 'seg'"):
        opt.set_task('seg')


@pytest.mark.parametrize('kwargs, match', [
    (dict(task_sampling_weights=dict(det=0.0)), 'with one positive'),
    (dict(task_sampling_weights=dict(det=-1.0, cls=1.0)), 'must be >= 0'),
    (dict(task_sampling_weights=dict(det=1.0),
          task_grad_weights=dict(det=0.0)), 'must be positive'),
    (dict(task_sampling_weights={}), 'non-empty'),
    (dict(task_sampling_weights=dict(det=1.0),
          task_grad_weights=dict(cls=1.0)), r"tasks \['cls'\]"),
])
def test_mt_adamw_rejects_bad_weights(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MTAdamW(_params(), **kwargs)
