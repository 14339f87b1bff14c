"""Weight initialisation and pretrained loading shared by the backbones."""
from typing import Callable

from mmengine.logging import MMLogger
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn


def load_pretrained_strictly(
        model: nn.Module,
        checkpoint_filter: Callable[[dict, nn.Module], dict]) -> bool:
    """Load ``model.init_cfg`` (``type='Pretrained'``) through
    ``checkpoint_filter(checkpoint, model)`` with ``strict=True``, so a checkpoint of another
    arch or model raises naming the missing/unexpected keys instead of
    loading nothing quietly. Returns False when there is nothing to load."""
    init_cfg = model.init_cfg
    if init_cfg is None or init_cfg.get('type') != 'Pretrained':
        return False
    logger = MMLogger.get_current_instance()
    ckpt = CheckpointLoader.load_checkpoint(
        init_cfg['checkpoint'], map_location='cpu', logger=logger)
    model.load_state_dict(checkpoint_filter(ckpt, model), strict=True)
    logger.info(f'{type(model).__name__}: loaded {init_cfg["checkpoint"]}')
    return True


def init_linear_and_layer_norm(model: nn.Module) -> None:
    """The official Swin-style init: trunc-normal (std 0.02) Linear weights,
    zero biases, unit LayerNorms; other layers keep PyTorch's defaults."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0)
