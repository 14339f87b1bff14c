"""ViDT+'s mask-vector (UQR) and token-labeling losses.

"An Extendable, Efficient and Effective Transformer-based Object Detector"
(Song et al., arXiv:2204.07962, Sec. 3.2-3.3); official code
https://github.com/naver-ai/vidt (branch ``vidt-plus`` a8c48b5,
``methods/vidt/criterion.py``: ``loss_masks`` and ``loss_tokens``; weights
``vector_loss_coef`` 3 and ``token_loss_coef`` 2 in ``arguments.py``).

Both need instance masks. :func:`gt_masks_from_samples` collects them from
mmdet data samples, padded to the batch, and names the config option that
asked for them when a sample has none. The focal and dice terms are mmdet's
functions; the token targets are built per instance and pooled (avg pooling
is linear), which equals the official pooled one-hot class map without
materialising a (B, H, W, num_classes) tensor at image resolution.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.losses import l1_loss
from mmdet.models.losses.dice_loss import dice_loss
from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor, nn

from vitdense.models.layers.dct_mask import DCTMaskCoder
from vitdense.registry import MODELS

__all__ = ['MaskVectorLoss', 'TokenLabelLoss', 'gt_masks_from_samples']


def gt_masks_from_samples(batch_data_samples: SampleList,
                          pad_shape: Tuple[int, int], option: str,
                          device: torch.device) -> List[Tensor]:
    """Each sample's ``gt_instances.masks`` as (n_i, H, W) bool, zero-padded
    (bottom/right) or cropped to ``pad_shape`` (the batch input size).

    Raises:
        ValueError: a sample has no masks; the message names ``option``, the
            config option that needs them, and the missing field.
    """
    out = []
    pad_h, pad_w = int(pad_shape[0]), int(pad_shape[1])
    for i, sample in enumerate(batch_data_samples):
        gt = sample.gt_instances
        if 'masks' not in gt:
            name = sample.metainfo.get('img_path', f'sample {i}')
            raise ValueError(
                f'`{option}` needs instance masks, but the data sample '
                f'of {name} has no `gt_instances.masks`: load them with '
                '`LoadAnnotations(with_mask=True)` and pack them (mmdet '
                f'`PackDetInputs`), or set `{option}` off')
        masks = gt.masks
        if not isinstance(masks, Tensor):
            masks = masks.to_tensor(dtype=torch.bool, device=device)
        masks = masks.to(device=device, dtype=torch.bool)
        masks = masks[:, :pad_h, :pad_w]
        out.append(
            F.pad(masks,
                  (0, pad_w - masks.shape[2], 0, pad_h - masks.shape[1])))
    return out


@MODELS.register_module()
class MaskVectorLoss(nn.Module):
    """UQR loss: L1 between the matched queries' mask vectors and the DCT
    vectors of their ground-truth masks, averaged over all coefficients
    (official ``loss_masks`` without ``--no_vector_loss_norm``).

    Args:
        mask_size (int): side of the cropped mask (``gt_mask_len``).
            Default: 128.
        num_coeffs (int): DCT coefficients (``n_keep``). Default: 256.
        loss_weight (float): official ``vector_loss_coef``. Default: 3.0.
    """

    def __init__(self,
                 mask_size: int = 128,
                 num_coeffs: int = 256,
                 loss_weight: float = 3.0) -> None:
        super().__init__()
        self.coder = DCTMaskCoder(mask_size, num_coeffs)
        self.loss_weight = loss_weight

    @torch.no_grad()
    def get_targets(self, gt_masks: Tensor, gt_bboxes: Tensor) -> Tensor:
        """DCT vectors (M, num_coeffs) of ground-truth masks (M, H, W) at
        the input image's scale, cropped to their (M, 4) xyxy pixel boxes
        (a tensor or mmdet ``HorizontalBoxes``).
        The same for every prediction layer: encode once per batch and
        gather the matched ones per layer."""
        return self.coder.encode_instances(gt_masks, get_box_tensor(gt_bboxes))

    def forward(self, pred_vectors: Tensor, target_vectors: Tensor) -> Tensor:
        """Matched pairs (M, num_coeffs) -> ``loss_weight`` x mean |diff|;
        0 (in the graph) without pairs."""
        if pred_vectors.shape[0] == 0:
            return pred_vectors.sum() * 0
        return self.loss_weight * l1_loss(
            pred_vectors, target_vectors.to(pred_vectors.dtype))


@MODELS.register_module()
class TokenLabelLoss(nn.Module):
    """Token labeling: sigmoid focal + dice loss of the per-token class
    logits of every level (:class:`~vitdense.models.layers.TokenLabelHead`)
    against the fraction of each token's pixels that belongs to each class
    (official ``loss_tokens``).

    Pixel targets: instances claim pixels in order (an earlier instance
    keeps an overlap), class ``c`` goes to channel ``c + 1``, channel 0 is
    "any object"; each channel is average-pooled to the level's token grid.
    Focal: mean over tokens, sum over images and channels; dice over all
    tokens and channels of an image, smoothing 1, summed over images; both
    divided by ``avg_factor`` (the number of ground-truth boxes) and summed
    over levels.

    Args:
        num_classes (int): object classes (logits have ``num_classes + 1``).
        alpha (float): focal alpha. Default: 0.25.
        gamma (float): focal gamma. Default: 2.0.
        loss_weight (float): weight of each of the two terms (official
            ``token_loss_coef``). Default: 2.0.
    """

    def __init__(self,
                 num_classes: int,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 loss_weight: float = 2.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.alpha = alpha
        self.gamma = gamma
        self.loss_weight = loss_weight

    def token_targets(self, gt_masks: Sequence[Tensor],
                      gt_labels: Sequence[Tensor], size: Tuple[int,
                                                               int]) -> Tensor:
        """(B, h, w, num_classes + 1) soft targets on an (h, w) token grid
        from per-image masks (n_i, H, W) (same H, W for all) and labels."""
        targets = []
        for masks, labels in zip(gt_masks, gt_labels):
            if masks.shape[0] != labels.shape[0]:
                raise ValueError(f'TokenLabelLoss: {masks.shape[0]} masks but '
                                 f'{labels.shape[0]} labels in an image')
            target = masks.new_zeros((self.num_classes + 1, *size),
                                     dtype=torch.float32)
            if masks.shape[0] == 0:
                targets.append(target.permute(1, 2, 0))
                continue
            claimed = masks.bool().flatten(1).long().cumsum(0) > 0
            excl = masks.bool().flatten(1).clone()
            excl[1:] &= ~claimed[:-1]
            pooled = F.adaptive_avg_pool2d(
                excl.view_as(masks).float()[None], size)[0]  # (n, h, w)
            target.index_add_(0, labels.long() + 1, pooled)
            target[0] = pooled.sum(0)
            targets.append(target.permute(1, 2, 0))
        return torch.stack(targets)

    def forward(self, token_logits: Sequence[Tensor],
                gt_masks: Sequence[Tensor], gt_labels: Sequence[Tensor],
                avg_factor: float) -> Dict[str, Tensor]:
        """``token_logits``: per level (B, h, w, num_classes + 1);
        ``gt_masks``: per image (n_i, H, W) bool at the padded input size;
        ``gt_labels``: per image (n_i, ) in [0, num_classes)."""
        loss_focal = loss_dice = 0
        for logits in token_logits:
            batch_size, h, w, channels = logits.shape
            if channels != self.num_classes + 1:
                raise ValueError(
                    f'TokenLabelLoss: logits have {channels} channels, '
                    f'expected num_classes + 1 = {self.num_classes + 1}')
            target = self.token_targets(gt_masks, gt_labels, (h, w))
            logits = logits.reshape(batch_size, h * w, channels)
            target = target.reshape(batch_size, h * w, channels).to(logits)
            loss_focal = loss_focal + py_sigmoid_focal_loss(
                logits,
                target,
                gamma=self.gamma,
                alpha=self.alpha,
                avg_factor=avg_factor * h * w)
            loss_dice = loss_dice + dice_loss(logits.sigmoid(),
                                              target,
                                              eps=1.0,
                                              naive_dice=True,
                                              avg_factor=avg_factor)
        return dict(loss_token_focal=self.loss_weight * loss_focal,
                    loss_token_dice=self.loss_weight * loss_dice)
