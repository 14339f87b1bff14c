"""Train a tiny config for a few iterations with mmengine's Runner (CPU)."""
import os.path as osp

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from vitdense.utils import register_all_modules

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


class _LossRecorder(Hook):

    def __init__(self, losses: list):
        self.losses = losses

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss']))


def train_tiny(config: str, data_root: str, work_dir: str,
               iters: int = 2) -> list:
    """Train ``configs/<config>`` on ``data_root``; return the losses."""
    register_all_modules(init_default_scope=False)  # as tools/train.py
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    cfg.work_dir = work_dir
    cfg.train_dataloader.dataset.data_root = data_root.rstrip('/') + '/'
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters + 1)
    for key in ('val', 'test'):
        cfg[f'{key}_cfg'] = cfg[f'{key}_dataloader'] = None
        cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.log_level = 'WARNING'
    losses = []
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_LossRecorder(losses), priority='LOWEST')
    runner.train()
    return losses
