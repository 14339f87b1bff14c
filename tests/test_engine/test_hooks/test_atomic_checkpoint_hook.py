"""AtomicCheckpointHook on a toy mmengine Runner: it keeps exactly
``max_keep_ckpts`` checkpoints, and a save that fails half way leaves the
previous checkpoints (regular and best) and ``last_checkpoint`` intact."""
import glob
import os.path as osp
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

from vitdense.engine import AtomicCheckpointHook
from vitdense.engine.hooks import atomic_checkpoint_hook
from vitdense.utils import load_checkpoint_safely


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return [dict(value=v) for v in out]


class RisingMetric(BaseMetric):
    """Each evaluation scores better than the one before."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.calls += 1
        return dict(acc=float(self.calls))


def _runner(work_dir, hook, max_iters, val_interval=100, resume=False):
    dataset = [dict(inputs=torch.ones(2)) for _ in range(4)]
    loader = dict(dataset=dataset, batch_size=2,
                  sampler=dict(type='InfiniteSampler', shuffle=False))
    val_loader = dict(dataset=dataset, batch_size=2,
                      sampler=dict(type='DefaultSampler', shuffle=False))
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters,
                       val_interval=val_interval),
        val_dataloader=val_loader, val_cfg=dict(),
        val_evaluator=[RisingMetric()],
        default_hooks=dict(checkpoint=hook, logger=dict(type='LoggerHook')),
        resume=resume, default_scope='mmengine')


def _last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.mark.parametrize('max_keep', [1, 2, 3])
def test_keeps_exactly_max_keep_ckpts(tmp_path, max_keep):
    hook = AtomicCheckpointHook(interval=1, by_epoch=False,
                                max_keep_ckpts=max_keep)
    _runner(tmp_path, hook, max_iters=5).train()
    kept = sorted(osp.basename(p)
                  for p in glob.glob(str(tmp_path / 'iter_*.pth')))
    assert kept == [f'iter_{i}.pth' for i in range(6 - max_keep, 6)]
    assert _last_checkpoint(tmp_path) == str(tmp_path / 'iter_5.pth')
    assert load_checkpoint_safely(
        str(tmp_path / 'iter_5.pth'))['meta']['iter'] == 5
    assert glob.glob(str(tmp_path / '.*')) == []  # no partial files


def _fail_on(monkeypatch, name):
    """The file write of ``name`` writes half its bytes, then raises."""
    write = atomic_checkpoint_hook.atomic_write

    def failing(filepath, data):
        if osp.basename(filepath) == name:
            partial = osp.join(osp.dirname(filepath), f'.{name}.partial')
            with open(partial, 'wb') as f:
                f.write(data[:len(data) // 2])
            raise OSError('simulated crash while writing')
        write(filepath, data)

    monkeypatch.setattr(atomic_checkpoint_hook, 'atomic_write', failing)


@pytest.mark.parametrize('max_keep', [1, 2])
def test_failed_save_keeps_previous_checkpoints(tmp_path, monkeypatch,
                                                max_keep):
    hook = AtomicCheckpointHook(interval=1, by_epoch=False,
                                max_keep_ckpts=max_keep)
    _fail_on(monkeypatch, 'iter_3.pth')
    with pytest.raises(OSError, match='simulated crash'):
        _runner(tmp_path, hook, max_iters=5).train()
    kept = sorted(osp.basename(p)
                  for p in glob.glob(str(tmp_path / 'iter_*.pth')))
    assert kept == [f'iter_{i}.pth' for i in range(3 - max_keep, 3)]
    assert _last_checkpoint(tmp_path) == str(tmp_path / 'iter_2.pth')
    checkpoint = load_checkpoint_safely(_last_checkpoint(tmp_path))
    assert checkpoint['meta']['iter'] == 2
    assert checkpoint['message_hub']['runtime_info']['keep_ckpt_ids'] == \
        list(range(3 - max_keep, 3))

    # The next run removes the partial file and continues from iteration 2.
    monkeypatch.undo()
    resumed = _runner(tmp_path, AtomicCheckpointHook(
        interval=1, by_epoch=False, max_keep_ckpts=max_keep), max_iters=5,
        resume=True)
    resumed.train()
    assert resumed.iter == 5
    assert not osp.exists(tmp_path / '.iter_3.pth.partial')
    kept = sorted(osp.basename(p)
                  for p in glob.glob(str(tmp_path / 'iter_*.pth')))
    assert kept == [f'iter_{i}.pth' for i in range(6 - max_keep, 6)]


def test_failed_best_save_keeps_previous_best(tmp_path, monkeypatch):
    hook = AtomicCheckpointHook(interval=100, by_epoch=False,
                                save_best='acc', rule='greater')
    runner = _runner(tmp_path, hook, max_iters=4, val_interval=2)
    _fail_on(monkeypatch, 'best_acc_iter_4.pth')
    with pytest.raises(OSError, match='simulated crash'):
        runner.train()
    best = str(tmp_path / 'best_acc_iter_2.pth')
    assert load_checkpoint_safely(best)['meta']['iter'] == 2

    monkeypatch.undo()
    hook = AtomicCheckpointHook(interval=100, by_epoch=False,
                                save_best='acc', rule='greater')
    _runner(tmp_path, hook, max_iters=4, val_interval=2).train()
    assert sorted(osp.basename(p) for p in glob.glob(
        str(tmp_path / 'best_*.pth'))) == ['best_acc_iter_4.pth']
