"""UnmixedTrainLoop / MultiTaskValLoop / MultiTaskTestLoop on a real
mmengine Runner: one task per iteration at the configured frequencies (and
deterministic, and resumable), ``set_task`` with the drawn task, mixed
sampling, merged val/test metrics."""
import itertools
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from vitdense.engine.runner import UnmixedTrainLoop
from vitdense.utils import register_all_modules

register_all_modules(init_default_scope=False)
_NAMES = itertools.count()  # one experiment name per Runner


class ToyModel(BaseModel):
    """Records, per train step, the task of every sample it got and the
    optimizer's task at that moment."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.steps = []

    def forward(self, inputs, task, mode='tensor'):
        out = self.linear(torch.stack(inputs)).flatten()
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return [dict(task=t, value=float(o)) for t, o in zip(task, out)]

    def train_step(self, data, optim_wrapper):
        batches = data if isinstance(data, list) else [data]
        self.steps.append(
            dict(tasks=[sorted(set(b['task'])) for b in batches],
                 values=[[float(x) for x in b['inputs']] for b in batches],
                 optimizer_task=getattr(optim_wrapper.optimizer, 'task',
                                        None)))
        losses = sum(
            self(b['inputs'], b['task'], mode='loss')['loss'] for b in batches)
        optim_wrapper.update_params(losses)
        return dict(loss=losses)


class ValueMetric(BaseMetric):
    """``{prefix}/count`` and ``{prefix}/tasks`` of the evaluated samples."""

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return dict(count=len(results),
                    tasks=','.join(sorted({r['task']
                                           for r in results})))


class RecordMetrics(Hook):

    def __init__(self):
        self.val, self.test = [], []

    def after_val_epoch(self, runner, metrics=None):
        self.val.append(metrics)

    def after_test_epoch(self, runner, metrics=None):
        self.test.append(metrics)


def _data(task, n, offset=0):
    return [
        dict(inputs=torch.tensor([float(offset + i)]), task=task)
        for i in range(n)
    ]


def _loader(task, n=8, offset=0, train=True):
    return dict(dataset=_data(task, n, offset),
                sampler=dict(
                    type='InfiniteSampler' if train else 'DefaultSampler',
                    shuffle=False),
                batch_size=2,
                collate_fn=dict(type='pseudo_collate'))


def _runner(tmp_path,
            seed=0,
            optimizer=None,
            hooks=(),
            load_from=None,
            checkpoint_interval=None,
            **loop):
    loop.setdefault('extra_dataloaders', dict(cls=_loader('cls', offset=100)))
    return Runner(
        model=ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=_loader('det'),
        train_cfg=dict(type='UnmixedTrainLoop', primary_task='det', **loop),
        optim_wrapper=dict(optimizer=optimizer or dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None if checkpoint_interval is
                           None else dict(type='CheckpointHook',
                                          interval=checkpoint_interval,
                                          by_epoch=False)),
        custom_hooks=list(hooks),
        randomness=dict(seed=seed),
        load_from=load_from,
        resume=load_from is not None,
        experiment_name=f'multi_task_loops_{next(_NAMES)}',
        log_level='WARNING')


def _tasks(runner):
    return [step['tasks'] for step in runner.model.steps]


def test_unmixed_draws_one_task_per_iteration_at_configured_weights(tmp_path):
    runner = _runner(tmp_path,
                     max_iters=400,
                     task_weights=dict(det=3.0, cls=1.0))
    runner.train()
    tasks = _tasks(runner)
    assert len(tasks) == 400
    # one batch per iteration, all of its samples from one task
    assert all(len(t) == 1 and len(t[0]) == 1 for t in tasks)
    n_det = sum(t == [['det']] for t in tasks)
    # Binomial(400, 0.75): mean 300, sd 8.7; 4 sd
    assert 265 <= n_det <= 335
    assert runner.message_hub.get_info('train_task') == tasks[-1][0][0]
    assert 'train/task_cls' in runner.message_hub.log_scalars
    # each task's batches continue its own data in order
    det_values = [
        v for s in runner.model.steps for v in s['values'][0]
        if s['tasks'] == [['det']]
    ]
    assert det_values[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]

    # deterministic for a fixed seed, different for another
    again = _runner(tmp_path, max_iters=60, task_weights=dict(det=3, cls=1))
    again.train()
    assert _tasks(again) == tasks[:60]
    other = _runner(tmp_path,
                    seed=1,
                    max_iters=60,
                    task_weights=dict(det=3, cls=1))
    other.train()
    assert _tasks(other) != tasks[:60]


def test_unmixed_sets_optimizer_task_to_drawn_task(tmp_path):
    weights = dict(det=1.0, cls=2.0)
    runner = _runner(tmp_path,
                     max_iters=20,
                     task_weights=weights,
                     optimizer=dict(type='MTAdamW',
                                    lr=0.01,
                                    task_sampling_weights=weights))
    runner.train()
    steps = runner.model.steps
    assert {s['tasks'][0][0] for s in steps} == {'det', 'cls'}
    assert all(s['optimizer_task'] == s['tasks'][0][0] for s in steps)


def test_unmixed_resume_continues_task_sequence_and_data(tmp_path):
    full = _runner(tmp_path / 'full', max_iters=12)
    full.train()
    first = _runner(tmp_path / 'part', max_iters=6, checkpoint_interval=6)
    first.train()
    resumed = _runner(tmp_path / 'resumed',
                      max_iters=12,
                      load_from=osp.join(tmp_path, 'part', 'iter_6.pth'))
    resumed.train()
    assert resumed.model.steps == full.model.steps[6:]


def test_mixed_passes_one_batch_of_every_task(tmp_path):
    runner = _runner(tmp_path,
                     max_iters=3,
                     mixed=True,
                     extra_dataloaders=dict(cls=_loader('cls', offset=100),
                                            cap=_loader('cap', offset=200)))
    runner.train()
    assert _tasks(runner) == [[['det'], ['cls'], ['cap']]] * 3
    assert runner.model.steps[1]['values'] == [[2, 3], [102, 103], [202, 203]]


@pytest.mark.parametrize('loop, match', [
    (dict(task_weights=dict(det=1.0, seg=1.0)),
     r"task_weights name tasks \['seg'\] that have no dataloader"),
    (dict(task_weights=dict(det=1.0)),
     r"tasks \['cls'\] have a dataloader but no entry in task_weights"),
    (dict(task_weights=dict(det=1.0, cls=-1.0)), 'must be >= 0'),
    (dict(task_weights=dict(det=0.0, cls=0.0)), 'at least one positive'),
    (dict(extra_dataloaders=dict(det=_loader('det'))),
     'extra_dataloaders has the primary task'),
])
def test_unmixed_rejects_bad_task_weights(tmp_path, loop, match):
    runner = _runner(tmp_path, max_iters=2, **loop)
    with pytest.raises(ValueError, match=match):
        runner.train()


@pytest.mark.parametrize('off', ['cls', 'det'])
def test_a_task_of_weight_zero_is_switched_off(tmp_path, off):
    """The single-task baselines of a multi-task config: a zero weight
    (loop and MT-AdamW alike) is never drawn; an extra task's dataloader is
    not even built."""
    weights = {**dict(det=1.0, cls=1.0), off: 0.0}
    runner = _runner(tmp_path,
                     max_iters=12,
                     task_weights=weights,
                     optimizer=dict(type='MTAdamW',
                                    lr=0.01,
                                    task_sampling_weights=weights))
    runner.train()
    on = 'det' if off == 'cls' else 'cls'
    assert _tasks(runner) == [[[on]]] * 12
    assert runner.train_loop.tasks == [on]
    assert ('cls' in runner.train_loop.dataloaders) == (off != 'cls')


def test_unmixed_rejects_optimizer_weights_that_differ(tmp_path):
    runner = _runner(tmp_path,
                     max_iters=2,
                     task_weights=dict(det=1.0, cls=1.0),
                     optimizer=dict(type='MTAdamW',
                                    task_sampling_weights=dict(det=3.0,
                                                               cls=1.0)))
    with pytest.raises(ValueError, match='differ from the loop'):
        runner.train()


def test_mixed_rejects_task_normalising_optimizer(tmp_path):
    runner = _runner(tmp_path,
                     max_iters=2,
                     mixed=True,
                     optimizer=dict(type='MTAdamW',
                                    task_sampling_weights=dict(det=1.0,
                                                               cls=1.0)))
    with pytest.raises(ValueError, match='mixed=True'):
        runner.train()


def _eval_runner(tmp_path, extra_prefix='cls'):
    hook = RecordMetrics()
    extra = dict(
        cls=dict(dataloader=_loader('cls', n=5, offset=100, train=False),
                 evaluator=Evaluator(ValueMetric(prefix=extra_prefix))))
    runner = Runner(model=ToyModel(),
                    work_dir=str(tmp_path),
                    val_dataloader=_loader('det', n=3, train=False),
                    val_cfg=dict(type='MultiTaskValLoop', extra_tasks=extra),
                    val_evaluator=Evaluator(ValueMetric(prefix='det')),
                    test_dataloader=_loader('det', n=3, train=False),
                    test_cfg=dict(type='MultiTaskTestLoop', extra_tasks=extra),
                    test_evaluator=Evaluator(ValueMetric(prefix='det')),
                    custom_hooks=[hook],
                    experiment_name=f'multi_task_loops_{next(_NAMES)}',
        log_level='WARNING')
    return runner, hook


def test_val_and_test_loops_merge_metrics_of_all_tasks(tmp_path):
    runner, hook = _eval_runner(tmp_path)
    expected = {
        'det/count': 3,
        'det/tasks': 'det',
        'cls/count': 5,
        'cls/tasks': 'cls'
    }
    assert runner.val() == expected
    assert runner.test() == expected
    assert hook.val == [expected] and hook.test == [expected]


def test_val_loop_rejects_duplicate_metric_keys(tmp_path):
    runner, _ = _eval_runner(tmp_path, extra_prefix='det')
    with pytest.raises(KeyError,
                       match="'det/count' is reported by both "
                       "the primary task and task 'cls'"):
        runner.val()


def test_loops_are_registered():
    from mmengine.registry import LOOPS
    assert LOOPS.get('UnmixedTrainLoop') is UnmixedTrainLoop
