"""A batch of 0 images through the backbones.

The backbones fold the batch size into window, group or token dimensions
(``view(B * n, ...)``, ``reshape(-1, ...)``), which fails or is ambiguous for
0 images. Rather than guarding every reshape, :func:`empty_batch_safe` wraps a
backbone's ``forward`` and answers an empty batch from a one-image forward.
"""
import functools
from typing import Callable

import torch
from torch import nn


def empty_batch_safe(forward: Callable) -> Callable:
    """Let a backbone ``forward(self, x)`` take ``x`` of shape (0, C, H, W).

    For an empty batch it returns what a one-image forward returns (the same
    number of maps, channels, spatial sizes, dtype and device) with batch 0.
    The sizes come from a forward of one zero image in eval mode without
    autograd; every module's training flag is restored afterwards, so
    BatchNorm statistics and random streams are untouched. The empty outputs
    are tied with weight 0 to ``x`` and to every trainable parameter, so a
    loss on them backpropagates zero gradients, as a real forward would.
    """

    @functools.wraps(forward)
    def wrapper(self: nn.Module, x: torch.Tensor, *args, **kwargs):
        if x.size(0) > 0:
            return forward(self, x, *args, **kwargs)
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                outs = forward(self, x.new_zeros((1, *x.shape[1:])), *args,
                               **kwargs)
        finally:
            for m, mode in modes:
                m.training = mode
        empty = [o.new_zeros((0, *o.shape[1:])) for o in outs]
        if torch.is_grad_enabled():
            trainable = [p for p in self.parameters() if p.requires_grad]
            tie = sum(
                (p.reshape(-1)[:1].sum() for p in trainable), x.sum()) * 0
            empty = [o + tie.to(o.dtype) for o in empty]
        return type(outs)(empty)

    return wrapper
