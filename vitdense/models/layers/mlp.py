"""The transformer MLP of the vitdense backbones: ``fc2(GELU(fc1(x)))``.

timm's ``Mlp`` with its key names (``fc1``, ``fc2``), which the official
CrossFormer and ViT-CoMer checkpoints use; timm is not a dependency, and
mmcv's ``FFN`` names its layers ``layers.0.0`` / ``layers.1``, so it would
need key renaming for every official checkpoint.
"""
import torch
from torch import nn

__all__ = ['Mlp']


class Mlp(nn.Module):
    """Linear ``dims -> hidden_dims``, GELU, Linear ``hidden_dims -> dims``
    on the last axis (any leading shape)."""

    def __init__(self, dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
