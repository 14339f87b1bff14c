"""NonFiniteCheckHook: a NaN/Inf loss stops training before the optimizer
step, naming the terms and the iteration; non-finite weights are never
saved."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from vitdense.engine.hooks import NonFiniteCheckHook, NonFiniteLossError
from vitdense.utils import register_all_modules

REPO_ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


class ToyModel(BaseModel):
    """A linear model that goes NaN at iteration ``nan_at``: in its
    ``loss_b`` term, or (``in_head``) in its head, whose outputs then reach a
    stand-in for a matcher that rejects them."""

    def __init__(self, nan_at: int, in_head: bool = False):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)
        self.toy_head = torch.nn.Linear(2, 1)
        self.nan_at = nan_at
        self.in_head = in_head
        self.calls = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone(torch.stack(inputs))
        if mode != 'loss':
            return self.toy_head(feats)
        self.calls += 1
        if self.in_head and self.calls == self.nan_at:
            feats = feats * float('nan')
        out = self.toy_head(feats)
        if not torch.isfinite(out).all():
            raise ValueError('matrix contains invalid numeric entries')
        loss_b = out.abs().mean()
        if self.calls == self.nan_at:
            loss_b = loss_b * float('nan')
        return dict(loss_a=out.mean()**2,
                    loss_b=loss_b,
                    acc=torch.tensor(float('nan')))


class Snapshot(Hook):
    """Records the weights after every iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.weights = {}

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.weights[runner.iter + 1] = {
            k: v.clone()
            for k, v in runner.model.state_dict().items()
        }


def _runner(tmp_path, model):
    data = [dict(inputs=torch.randn(2)) for _ in range(8)]
    return Runner(model=model,
                  work_dir=str(tmp_path),
                  train_dataloader=dict(
                      dataset=data,
                      sampler=dict(type='InfiniteSampler', shuffle=False),
                      batch_size=2,
                      collate_fn=dict(type='pseudo_collate')),
                  train_cfg=dict(by_epoch=False, max_iters=5),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                  default_hooks=dict(checkpoint=dict(
                      type='CheckpointHook', by_epoch=False, interval=1)),
                  custom_hooks=[dict(type='NonFiniteCheckHook')],
                  default_scope='vitdense')


def test_non_finite_loss_stops_before_the_step_naming_terms_and_iteration(
        tmp_path):
    register_all_modules(init_default_scope=False)
    model = ToyModel(nan_at=3)
    runner = _runner(tmp_path, model)
    snapshot = Snapshot()
    runner.register_hook(snapshot)
    with pytest.raises(NonFiniteLossError) as error:
        runner.train()
    message = str(error.value)
    assert 'at iteration 3: non-finite loss terms: loss_b=nan.' in message
    assert 'loss_a' not in message and 'acc' not in message
    # Iteration 3 never stepped: the weights are those after iteration 2.
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value,
                                   snapshot.weights[2][name],
                                   rtol=0,
                                   atol=0)
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))
    assert not osp.exists(osp.join(str(tmp_path), 'iter_3.pth'))


def test_non_finite_head_outputs_stop_before_the_loss_code(tmp_path):
    register_all_modules(init_default_scope=False)
    runner = _runner(tmp_path, ToyModel(nan_at=2, in_head=True))
    with pytest.raises(NonFiniteLossError,
                       match=r'at iteration 2: the outputs of `toy_head` '
                       r'hold NaN or Inf, so its loss terms cannot be '
                       r'computed\.'):
        runner.train()
    assert osp.isfile(osp.join(str(tmp_path), 'iter_1.pth'))
    assert not osp.exists(osp.join(str(tmp_path), 'iter_2.pth'))


def test_head_outputs_are_not_checked_outside_training():
    head = torch.nn.Linear(2, 1)
    model = torch.nn.Module()
    model.toy_head = head
    runner = type('FakeRunner', (), dict(model=model, iter=0))()
    hook = NonFiniteCheckHook()
    hook.before_train(runner)
    head.eval()
    assert not torch.isfinite(head(torch.full((1, 2), float('nan')))).any()
    head.train()
    with pytest.raises(NonFiniteLossError, match='`toy_head`'):
        head(torch.full((1, 2), float('nan')))
    hook.after_train(runner)
    head(torch.full((1, 2), float('nan')))


class PoisonWeights(Hook):
    """Writes NaN into a weight after the step of iteration 2 (the loss
    stays finite until the next forward)."""

    priority = 'HIGHEST'

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.iter + 1 == 2:
            runner.model.backbone.bias.data[0] = float('nan')


def test_non_finite_weights_are_never_saved(tmp_path):
    register_all_modules(init_default_scope=False)
    runner = _runner(tmp_path, ToyModel(nan_at=0))
    runner.register_hook(PoisonWeights())
    with pytest.raises(NonFiniteLossError,
                       match=r'Refusing to save the checkpoint at iteration '
                       r'2: the weights hold NaN or Inf in backbone\.bias; '
                       r'training diverged\.'):
        runner.train()
    assert osp.isfile(osp.join(str(tmp_path), 'iter_1.pth'))
    assert not osp.exists(osp.join(str(tmp_path), 'iter_2.pth'))


def test_list_valued_loss_terms_are_checked():
    # mmdet's RPN returns one loss tensor per level.
    losses = dict(loss_rpn_cls=[torch.tensor(1.),
                                torch.tensor(float('inf'))],
                  loss_rpn_bbox=[torch.tensor(0.5)])
    with pytest.raises(NonFiniteLossError,
                       match=r'iteration 7: non-finite loss terms: '
                       r'loss_rpn_cls=inf\.'):
        NonFiniteCheckHook.check_losses(losses, 7)
    NonFiniteCheckHook.check_losses(
        dict(loss_rpn_cls=[torch.tensor(1.)], acc=torch.tensor(float('nan'))),
        7)


def test_checkpoint_with_non_finite_weights_is_refused():
    hook = NonFiniteCheckHook()
    state = dict(a=torch.ones(3),
                 b=torch.tensor([1., float('nan')]),
                 c=torch.tensor([float('-inf')]),
                 steps=torch.tensor(4))
    with pytest.raises(NonFiniteLossError,
                       match=r'checkpoint at iteration 12: the weights hold '
                       r'NaN or Inf in b, c;'):
        hook.before_save_checkpoint(None,
                                    dict(meta=dict(iter=12), state_dict=state))
    del state['b'], state['c']
    hook.before_save_checkpoint(None, dict(meta=dict(iter=12),
                                           state_dict=state))


@pytest.mark.parametrize('runtime',
                         ['default_runtime.py', 'default_runtime_seg.py'])
def test_hook_is_on_in_the_runtime_bases(runtime):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', runtime))
    assert dict(type='NonFiniteCheckHook') in cfg.custom_hooks
