"""Train a model: ``python tools/train.py CONFIG [options]`` (mmdet's flags).

On top of mmdet's tool: the process re-runs itself under tcmalloc
(:func:`~vitdense.utils.preload_tcmalloc`), the work dir is locked for the run
(:class:`~vitdense.utils.WorkDirLock`), mmengine's ``CheckpointHook`` is
replaced by :class:`~vitdense.engine.AtomicCheckpointHook` (no checkpoint is
lost to a kill during a save), and ``--resume`` of a weights-only file says
so (:class:`~vitdense.engine.CheckpointCheckHook`).
"""
import argparse
import contextlib
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdet.utils import setup_cache_size_limit_of_dynamo

from vitdense.utils import (WorkDirLock, configure_cpu_distributed,
                            launcher_rank, preload_tcmalloc,
                            register_all_modules)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a vitdense model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--overwrite-work-dir',
        action='store_true',
        help='start a new run even if the work dir holds the checkpoints of '
        'another run (they are overwritten); without it such a run is '
        'refused. A work dir in use by a live run is always refused.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torchrun passes --local-rank; torch.distributed.launch --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def use_vitdense_hooks(cfg: Config) -> None:
    """mmengine's ``CheckpointHook`` becomes ``AtomicCheckpointHook`` (same
    arguments); a resumed run checks that its checkpoint holds training
    state."""
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in (
            'CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
        checkpoint['type'] = 'vitdense.AtomicCheckpointHook'
    if cfg.get('resume', False):
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='vitdense.CheckpointCheckHook', training_state=True)]


def configure_cpu_fsdp(cfg: Config) -> Config:
    """Without CUDA, a ``FlexibleRunner`` with ``FSDPStrategy``
    (configs/_base_/strategies/fsdp.py) shards on the CPU: mmengine passes
    FSDP ``device_id=LOCAL_RANK``, which torch reads as a CUDA device, and
    torch 2.13 segfaults gathering a full state dict with ``offload_to_cpu``
    from CPU shards, so both are switched off."""
    strategy = cfg.get('strategy')
    if (cfg.get('runner_type') != 'FlexibleRunner' or not strategy
            or strategy.get('type') != 'FSDPStrategy'
            or torch.cuda.is_available()):
        return cfg
    wrapper = strategy.get('model_wrapper') or {}
    wrapper.setdefault('device_id', 'cpu')
    strategy['model_wrapper'] = wrapper
    state_dict_cfg = strategy.get('state_dict_cfg')
    if isinstance(state_dict_cfg, dict):
        for key in ('state_dict_config', 'optim_state_dict_config'):
            if isinstance(state_dict_cfg.get(key), dict):
                state_dict_cfg[key]['offload_to_cpu'] = False
    return cfg


def main():
    args = parse_args()
    preload_tcmalloc()  # re-run under tcmalloc (faster CPU training)
    register_all_modules(init_default_scope=False)
    setup_cache_size_limit_of_dynamo()

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    configure_cpu_distributed(cfg)
    configure_cpu_fsdp(cfg)

    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        else:
            assert optim_wrapper == 'OptimWrapper', (
                '`--amp` is only supported when the optimizer wrapper type is '
                f'`OptimWrapper` but got {optim_wrapper}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and \
                'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your'
                               ' configuration file.')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    use_vitdense_hooks(cfg)

    # Rank 0 locks the work dir; the other ranks write no checkpoints.
    if launcher_rank(cfg.launcher) == 0:
        lock = WorkDirLock(cfg.work_dir, resume=cfg.get('resume', False),
                           overwrite=args.overwrite_work_dir)
    else:
        lock = contextlib.nullcontext()
    with lock:
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        runner.train()


if __name__ == '__main__':
    main()
