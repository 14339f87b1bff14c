"""ViDT+'s token-labeling head: per-token class logits on the decoder memory.

"An Extendable, Efficient and Effective Transformer-based Object Detector"
(Song et al., arXiv:2204.07962, Sec. 3.3, after token labeling, Jiang et
al., NeurIPS 2021); official code https://github.com/naver-ai/vidt (branch
``vidt-plus`` a8c48b5, ``methods/vidt/deformable_transformer.py``:
``gen_encoder_output_proposals``, ``enc_output``, ``enc_output_norm``,
``token_embed``). Used in training only, with
:class:`~vitdense.models.losses.TokenLabelLoss`.

Different from the official code: the number of token classes is
``num_classes + 1`` (channel 0 "any object", channel ``c + 1`` mmdet's
0-based class ``c``) instead of the hard-coded 91 of COCO's category ids,
whose unused id 0 the official code takes as the "any object" channel.
"""
import math
from typing import List, Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from vitdense.registry import MODELS

__all__ = ['TokenLabelHead']


@MODELS.register_module()
class TokenLabelHead(BaseModule):
    """Linear -> LayerNorm -> Linear classifier on every memory token.

    As the official, tokens on padding, and tokens whose would-be encoder
    proposal (centre ``(x + 0.5) / valid_w``, ``(y + 0.5) / valid_h``, size
    ``0.05 * 2**level``) leaves ``(0.01, 0.99)``, enter as zeros.

    Args:
        embed_dims (int): width of the memory tokens.
        num_classes (int): object classes; the head predicts
            ``num_classes + 1`` logits per token.
        prior_prob (float): initial foreground probability of the
            classifier bias. Default: 0.01.
        init_cfg (dict, optional): mmengine initialisation; by default the
            official one (:meth:`init_weights`).
    """

    def __init__(self,
                 embed_dims: int,
                 num_classes: int,
                 prior_prob: float = 0.01,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.num_classes = num_classes
        self.prior_prob = prior_prob
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.classifier = nn.Linear(embed_dims, num_classes + 1)

    def init_weights(self) -> None:
        """Official: Xavier weights, the focal prior on the classifier bias,
        PyTorch's defaults elsewhere."""
        super().init_weights()
        if self.init_cfg is None:
            nn.init.xavier_uniform_(self.proj.weight)
            nn.init.xavier_uniform_(self.classifier.weight)
            nn.init.constant_(
                self.classifier.bias, -math.log(
                    (1 - self.prior_prob) / self.prior_prob))

    @staticmethod
    def valid_tokens(spatial_shapes: Tensor, memory_mask: Optional[Tensor],
                     batch_size: int) -> Tensor:
        """(B, sum HW) bool: not padding and the official proposal inside
        ``(0.01, 0.99)``."""
        valid, start = [], 0
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            device = spatial_shapes.device
            if memory_mask is None:
                pad = torch.zeros((batch_size, h, w),
                                  dtype=torch.bool,
                                  device=device)
            else:
                pad = memory_mask[:, start:start + h * w].view(-1, h, w)
            start += h * w
            valid_h = (~pad[:, :, 0]).sum(1).float()  # (B, )
            valid_w = (~pad[:, 0, :]).sum(1).float()
            ys = torch.arange(h, dtype=torch.float32, device=device) + 0.5
            xs = torch.arange(w, dtype=torch.float32, device=device) + 0.5
            cy = ys[None, :, None] / valid_h[:, None, None]  # (B, h, 1)
            cx = xs[None, None, :] / valid_w[:, None, None]  # (B, 1, w)
            size = 0.05 * 2.0**lvl
            inside = ((cy > 0.01) & (cy < 0.99) & (cx > 0.01) & (cx < 0.99)
                      & (0.01 < size < 0.99))
            valid.append((inside & ~pad).flatten(1))
        return torch.cat(valid, 1)

    def forward(self, memory: Tensor, memory_mask: Optional[Tensor],
                spatial_shapes: Tensor) -> List[Tensor]:
        """Memory (B, sum HW, C), its padding mask (B, sum HW) (True on
        padding) or None, and the (L, 2) level shapes -> per-level logits
        (B, h, w, num_classes + 1)."""
        batch_size = memory.shape[0]
        valid = self.valid_tokens(spatial_shapes, memory_mask, batch_size)
        memory = memory.masked_fill(~valid[..., None], 0.)
        logits = self.classifier(self.norm(self.proj(memory)))
        outs, start = [], 0
        for h, w in spatial_shapes.tolist():
            outs.append(logits[:, start:start + h * w].reshape(
                batch_size, h, w, -1))
            start += h * w
        return outs
