"""Multi-task loops for generalist models (Uni-Perceiver v2, arXiv 2211.09808).

The config keeps mmengine's ``train/val/test_dataloader`` for the primary
task (so every mmdet tool works on it); the other tasks come as extras:

- :class:`UnmixedTrainLoop`: the paper's *unmixed sampling* (Sec. "Task-Balanced
  Gradient Normalization"): every iteration draws ONE task by the configured
  weights and trains on a batch of that task only, telling the optimizer
  which task it is (``optimizer.set_task``, e.g. :class:`~vitdense.engine.
  optimizers.MTAdamW`). ``mixed=True`` is the paper's mixed-sampling ablation:
  every iteration one batch of every task in one ``train_step``.
- :class:`MultiTaskValLoop` / :class:`MultiTaskTestLoop`: mmengine's loops on
  the primary task, then each extra task with its own evaluator; the metrics
  are merged into one dict.

These subclass mmengine's loops, so hooks, logging, checkpoint resume and
validation work as in mmengine.
"""
import logging
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import broadcast_object_list
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop, TestLoop, ValLoop
from mmengine.runner.amp import autocast
from mmengine.runner.loops import (_InfiniteDataloaderIterator, _parse_losses,
                                   _update_losses)
from torch.utils.data import DataLoader

from vitdense.registry import LOOPS

__all__ = ['UnmixedTrainLoop', 'MultiTaskValLoop', 'MultiTaskTestLoop']


def _build_dataloader(runner, dataloader: Union[DataLoader, dict]):
    """Build a dataloader seeded as mmengine's ``BaseLoop`` seeds its own."""
    if isinstance(dataloader, DataLoader):
        return dataloader
    return runner.build_dataloader(dataloader,
                                   seed=runner.seed,
                                   diff_rank_seed=runner._randomness_cfg.get(
                                       'diff_rank_seed', False))


@LOOPS.register_module()
class UnmixedTrainLoop(IterBasedTrainLoop):
    """Iteration-based multi-task training with unmixed (or mixed) sampling.

    Unmixed (default): iteration i draws task k with probability
    ``s_k = task_weights[k] / sum(task_weights)`` from a numpy ``Generator``
    seeded with the runner's seed (rank 0's, broadcast, so every rank draws
    the same task), calls ``optimizer.set_task(k)`` when the optimizer has
    it, and runs ``model.train_step(batch_k, optim_wrapper)`` with the usual
    ``before/after_train_iter`` hooks. The drawn task is logged as
    ``message_hub`` info ``'train_task'`` and as the scalars
    ``train/task_<name>`` (1 for the drawn task, else 0; mmengine's
    ``LogProcessor`` logs their current value, so each log line shows the
    task of its iteration).

    Mixed (``mixed=True``, ablation): every iteration takes one batch of
    every task, primary first, then ``extra_dataloaders`` in order, and runs
    ``model.train_step([batch_primary, batch_extra, ...], optim_wrapper)``
    (the model sums the losses). ``task_weights`` are then not used.

    Resume: mmengine restores the iteration counter and the seed; the loop
    then replays the first ``iter`` task draws and advances each task's
    iterator by the number of batches that task consumed (as mmengine
    advances its single dataloader), so the task sequence and the batches
    continue exactly as in the uninterrupted run, given a fixed
    ``randomness.seed`` or the seed stored in the checkpoint.

    Every task's dataloader restarts when exhausted (mmengine's
    ``_InfiniteDataloaderIterator``); ``InfiniteSampler`` avoids the restarts.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The primary task's train dataloader.
        max_iters, val_begin, val_interval, dynamic_intervals: As
            :class:`mmengine.runner.IterBasedTrainLoop`.
        primary_task (str): Name of the task of ``dataloader``.
        task_weights (dict, optional): Task name -> sampling weight, one per
            task (primary and extras); 0 switches a task off (e.g. a
            single-task baseline of a multi-task config). Defaults to equal
            weights.
        extra_dataloaders (dict, optional): Task name -> dataloader (or its
            config, built by ``runner.build_dataloader`` with the runner's
            seed).
        mixed (bool): Mixed sampling instead of unmixed.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 primary_task: str = 'detection',
                 task_weights: Optional[Dict[str, float]] = None,
                 extra_dataloaders: Optional[Dict[str, Union[DataLoader,
                                                             dict]]] = None,
                 mixed: bool = False) -> None:
        super().__init__(runner, dataloader, max_iters, val_begin,
                         val_interval, dynamic_intervals)
        extra_dataloaders = dict(extra_dataloaders or {})
        if primary_task in extra_dataloaders:
            raise ValueError(
                f'UnmixedTrainLoop: extra_dataloaders has the primary task '
                f'{primary_task!r}, whose data is train_dataloader')
        self.primary_task = primary_task
        self.mixed = mixed
        all_tasks = [primary_task] + list(extra_dataloaders)
        if task_weights is None:
            task_weights = {task: 1.0 for task in all_tasks}
        unknown = sorted(set(task_weights) - set(all_tasks))
        if unknown:
            raise ValueError(
                f'UnmixedTrainLoop: task_weights name tasks {unknown} that '
                f'have no dataloader (primary task {primary_task!r} uses '
                f'train_dataloader, extra_dataloaders has '
                f'{sorted(extra_dataloaders)})')
        unweighted = [task for task in all_tasks if task not in task_weights]
        if unweighted:
            raise ValueError(
                f'UnmixedTrainLoop: tasks {unweighted} have a dataloader but '
                f'no entry in task_weights {dict(task_weights)}')
        bad = {k: v for k, v in task_weights.items() if not float(v) >= 0}
        if bad or not any(float(v) > 0 for v in task_weights.values()):
            raise ValueError(
                'UnmixedTrainLoop: task_weights must be >= 0 with at least '
                f'one positive, got {dict(task_weights)}')
        # a task of weight 0 is switched off (single-task baselines): never
        # drawn, its extra dataloader never built
        self.tasks = [t for t in all_tasks if float(task_weights[t]) > 0]
        self.dataloaders = {primary_task: self.dataloader}
        self._iterators = {primary_task: self.dataloader_iterator}
        for task, loader in extra_dataloaders.items():
            if task in self.tasks:
                self.dataloaders[task] = _build_dataloader(runner, loader)
                self._iterators[task] = _InfiniteDataloaderIterator(
                    self.dataloaders[task])
        total = sum(float(task_weights[task]) for task in self.tasks)
        self.task_probs = {
            task: float(task_weights[task]) / total
            for task in self.tasks
        }
        self._task_rng: Optional[np.random.Generator] = None

    def _draw_tasks(self) -> List[str]:
        """The tasks of the next iteration: one drawn task, or all."""
        if self.mixed:
            return list(self.tasks)
        index = self._task_rng.choice(
            len(self.tasks), p=[self.task_probs[t] for t in self.tasks])
        return [self.tasks[index]]

    def _check_optimizer(self) -> None:
        optimizer = getattr(self.runner.optim_wrapper, 'optimizer', None)
        if not hasattr(optimizer, 'set_task'):
            return
        if self.mixed:
            raise ValueError(
                f'UnmixedTrainLoop: mixed=True sums all tasks in one step, '
                f'but {type(optimizer).__name__} normalises the gradient of '
                f'one task per step (set_task); use AdamW for the mixed '
                f'ablation or mixed=False')
        weights = getattr(optimizer, 'task_sampling_weights', None)
        if weights is not None and (
                set(weights) != set(self.task_probs)
                or not np.allclose([weights[t] for t in self.tasks],
                                   [self.task_probs[t] for t in self.tasks])):
            raise ValueError(
                f'UnmixedTrainLoop: the optimizer\'s normalised '
                f'task_sampling_weights {weights} differ from the loop\'s '
                f'normalised task_weights {self.task_probs}; use the same '
                f'dict for both')

    def run(self) -> torch.nn.Module:
        """Launch training (mmengine's ``IterBasedTrainLoop.run`` with
        per-task data)."""
        self._check_optimizer()
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        # seeded here, after a resume has restored the checkpoint's seed
        seed = [self.runner.seed]
        broadcast_object_list(seed)
        self._task_rng = np.random.default_rng(seed[0])
        if self._iter > 0:
            print_log(
                f'Replay {self._iter} task draws and advance each task\'s '
                f'dataloader past the batches already trained',
                logger='current',
                level=logging.WARNING)
            for _ in range(self._iter):
                for task in self._draw_tasks():
                    next(self._iterators[task])
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            tasks = self._draw_tasks()
            batches = [next(self._iterators[task]) for task in tasks]
            if self.mixed:
                self.run_iter(batches)
            else:
                self._set_task(tasks[0])
                self.run_iter(batches[0])

            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()

        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def _set_task(self, task: str) -> None:
        """Tell the optimizer and the logs which task this iteration
        trains."""
        optimizer = getattr(self.runner.optim_wrapper, 'optimizer', None)
        if hasattr(optimizer, 'set_task'):
            optimizer.set_task(task)
        message_hub = self.runner.message_hub
        message_hub.update_info('train_task', task)
        for name in self.tasks:
            message_hub.update_scalar(f'train/task_{name}',
                                      float(name == task))


def _build_extra_tasks(runner, extra_tasks: Optional[dict],
                       loop: str) -> Dict[str, Tuple[DataLoader, Evaluator]]:
    """``{task: dict(dataloader=..., evaluator=...)}`` -> built pairs."""
    built = {}
    for task, cfg in (extra_tasks or {}).items():
        keys = sorted(cfg) if isinstance(cfg, dict) else None
        if keys != ['dataloader', 'evaluator']:
            raise ValueError(
                f'{loop}: extra_tasks[{task!r}] must be '
                f'dict(dataloader=..., evaluator=...), got {cfg!r}')
        dataloader = _build_dataloader(runner, cfg['dataloader'])
        evaluator = cfg['evaluator']
        if not isinstance(evaluator, Evaluator):
            evaluator = runner.build_evaluator(evaluator)
        if hasattr(dataloader.dataset, 'metainfo'):
            evaluator.dataset_meta = dataloader.dataset.metainfo
        built[task] = (dataloader, evaluator)
    return built


class _ExtraTasksMixin:
    """Evaluate the extra tasks and merge their metrics with the primary's.

    The extra tasks run without the per-iteration hooks
    (``before/after_{val,test}_iter``): those (mmdet's
    ``DetVisualizationHook`` of ``--show-dir``) belong to the primary task;
    the extra tasks log their own progress every ``log_interval`` batches,
    and the epoch hooks see the merged metrics once. Loss outputs of an
    extra task are reported as ``<task>/<key>``.
    """

    _stage = ''  # 'val' or 'test'
    log_interval = 50  # batches between progress lines of an extra task

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[Evaluator, dict, list],
                 fp16: bool = False,
                 extra_tasks: Optional[dict] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self.extra_tasks = _build_extra_tasks(runner, extra_tasks,
                                              type(self).__name__)

    def run(self) -> dict:
        """mmengine's ``ValLoop.run``/``TestLoop.run`` on the primary task,
        then the extra tasks; ``after_{val,test}_epoch`` gets the merged
        metrics."""
        stage = self._stage
        self.runner.call_hook(f'before_{stage}')
        self.runner.call_hook(f'before_{stage}_epoch')
        self.runner.model.eval()
        losses = getattr(self, f'{stage}_loss')
        losses.clear()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if losses:
            metrics.update(_parse_losses(losses, stage))
        metrics = self._merge_extra_metrics(metrics)
        self.runner.call_hook(f'after_{stage}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{stage}')
        return metrics

    @torch.no_grad()
    def _evaluate_extra_task(self, task: str, dataloader: DataLoader,
                             evaluator: Evaluator) -> dict:
        step = getattr(self.runner.model, f'{self._stage}_step')
        losses: dict = {}
        total = len(dataloader)
        for index, data_batch in enumerate(dataloader, 1):
            with autocast(enabled=self.fp16):
                outputs = step(data_batch)
            outputs, losses = _update_losses(outputs, losses)
            evaluator.process(data_samples=outputs, data_batch=data_batch)
            if index % self.log_interval == 0 or index == total:
                print_log(f'{self._stage} {task}: [{index}/{total}]',
                          logger='current')
        metrics = evaluator.evaluate(len(dataloader.dataset))
        if losses:
            metrics.update({
                f'{task}/{key}': value
                for key, value in _parse_losses(losses, self._stage).items()
            })
        return metrics

    def _merge_extra_metrics(self, metrics: dict) -> dict:
        merged = dict(metrics)
        owners = {key: 'the primary task' for key in merged}
        for task, (dataloader, evaluator) in self.extra_tasks.items():
            for key, value in self._evaluate_extra_task(
                    task, dataloader, evaluator).items():
                if key in merged:
                    raise KeyError(
                        f'{type(self).__name__}: metric {key!r} is reported '
                        f'by both {owners[key]} and task {task!r}; give one '
                        f'of their metrics a distinct prefix')
                merged[key] = value
                owners[key] = f'task {task!r}'
        return merged


@LOOPS.register_module()
class MultiTaskValLoop(_ExtraTasksMixin, ValLoop):
    """mmengine's ``ValLoop`` on the primary task, then every extra task.

    Args:
        runner, dataloader, evaluator, fp16: As mmengine's ``ValLoop``
            (primary task).
        extra_tasks (dict, optional): Task name ->
            ``dict(dataloader=..., evaluator=...)`` (objects or configs).
    """

    _stage = 'val'


@LOOPS.register_module()
class MultiTaskTestLoop(_ExtraTasksMixin, TestLoop):
    """mmengine's ``TestLoop`` on the primary task, then every extra task.

    Args: as :class:`MultiTaskValLoop`.
    """

    _stage = 'test'
