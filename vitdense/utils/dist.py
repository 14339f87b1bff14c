"""Distributed runs without a GPU."""
import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = ['configure_cpu_distributed']


def configure_cpu_distributed(cfg: Config) -> Config:
    """Make a ``--launcher`` run work on CPU-only machines.

    mmdet/mmseg runtimes ask for the NCCL backend, mmengine's pytorch
    launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``; all of it needs CUDA. Without CUDA this
    switches to gloo and CPU DDP (``device_ids=None``) and, for torchrun
    (``launcher='pytorch'``), opens the gloo process group itself so that
    mmengine skips its CUDA-only set-up. With CUDA nothing changes.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return cfg
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if cfg.launcher == 'pytorch' and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    return cfg
