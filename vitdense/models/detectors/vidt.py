"""ViDT: the encoder-free deformable detector on a backbone with [DET] tokens.

"ViDT: An Efficient and Effective Fully Transformer-based Object Detector"
(Song et al., ICLR 2022, arXiv:2110.03921); official code
https://github.com/naver-ai/vidt (branch ``main``, 5207d04:
``methods/vidt/detector.py``, ``methods/vidt/deformable_transformer.py``,
``methods/vidt/matcher.py``, ``methods/vidt/criterion.py``).

The backbone (Swin with RAM, :class:`vitdense.models.backbones.SwinRAM`)
carries the object queries: it returns multi-scale [PATCH] feature maps,
the final [DET] tokens and their learnable positional embedding. The
detector projects them (``neck``: 1x1 conv + GroupNorm per level, mmdet's
``ChannelMapper``; ``query_proj``/``query_pos_proj``: 1x1 conv + GroupNorm
on the tokens, normalised over all tokens of an image as the official
``tgt_proj``/``query_pos_proj``), takes the reference points as
``sigmoid(Linear(query_pos))`` and runs mmdet's Deformable-DETR decoder
without any encoder ("neck-free"). Heads, Hungarian matching and losses are
mmdet's ``DeformableDETRHead`` (focal 2 / L1 5 / GIoU 2 with the same
matching costs). The [DET] tokens out of the backbone are themselves a
prediction layer, as in the official model: with ``num_layers`` decoder
layers there are ``num_layers + 1`` class/box predictions, all supervised,
and with ``with_box_refine`` the first box branch also refines the reference
points entering the first decoder layer.

Different from the official code: normalisation and zero padding happen in
mmdet's ``DetDataPreprocessor`` (ImageNet mean/std on RGB, padded to the
largest image of the batch as the official ``nested_tensor_from_tensor_list``
when ``pad_size_divisor=1``); a batch without padding passes no mask, which
equals the official all-valid mask. The official transformer's
``level_embed`` is not used by its forward and is not a parameter here.
Official checkpoints are converted by :mod:`vitdense.converters.vidt`.

ViDT+ (arXiv:2204.07962; official branch ``vidt-plus`` a8c48b5) is this
detector with independent switches, the paper's ablation ladder: ``neck``
:class:`~vitdense.models.necks.EPFF`; ``bbox_head`` ``ViDTHead`` with
``loss_iou_aware`` and/or ``with_mask_vectors`` (UQR); and
``token_label_head`` (token labeling: per-token class logits on the
decoder memory, training only, with
:class:`~vitdense.models.losses.TokenLabelLoss`; needs instance masks).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors import DeformableDETR, DetectionTransformer
from mmdet.models.layers import DeformableDetrTransformerDecoder
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import OptConfigType, reduce_mean
from torch import Tensor, nn

from vitdense.models.detectors.dino import VitdenseMSDAMixin
from vitdense.models.losses.vidt_plus_loss import gt_masks_from_samples
from vitdense.ops import MultiScaleDeformableAttention
from vitdense.registry import MODELS

__all__ = ['ViDT']


def _token_proj(in_channels: int, out_channels: int,
                num_groups: int) -> nn.Sequential:
    """1x1 conv + GroupNorm over (B, C, N, 1) token maps, as the official
    ``tgt_proj``/``query_pos_proj`` (GroupNorm statistics over all tokens of
    an image)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.GroupNorm(num_groups, out_channels))


@MODELS.register_module()
class ViDT(VitdenseMSDAMixin, DetectionTransformer):
    """ViDT on mmdet 3.x and vitdense's deformable attention.

    Args:
        backbone (dict): a backbone whose ``forward(inputs, mask)`` returns
            ``(feats, det_tokens, det_pos)`` as
            :class:`~vitdense.models.backbones.SwinRAM`: the multi-scale
            feature maps (``num_feature_levels`` of them after ``neck``),
            the [DET] tokens ``(B, num_queries, det_channels)`` and their
            positional embedding ``(1 or B, num_queries, pos_channels)``;
            ``mask`` ``(B, H, W)`` is True on padded pixels, or None.
        neck (dict): projection of the feature maps to ``embed_dims``
            (``ChannelMapper`` with 1x1 conv + GN and ``bias=True`` for the
            official ``input_proj``, or ViDT+'s
            :class:`~vitdense.models.necks.EPFF`).
        decoder (dict): ``DeformableDetrTransformerDecoder`` arguments.
        bbox_head (dict): ``DeformableDETRHead`` (or
            :class:`~vitdense.models.dense_heads.ViDTHead`, with ViDT+'s
            IoU-aware loss) arguments;
            ``num_pred_layer`` (``decoder.num_layers + 1``) and
            ``share_pred_layer`` (``not with_box_refine``) are set here.
        det_channels (int): channels of the backbone's [DET] tokens.
        pos_channels (int): channels of their positional embedding.
        with_box_refine (bool): iterative box refinement, also from the
            backbone's [DET] tokens into the first decoder layer. Default:
            True (the released models).
        num_feature_levels (int): feature levels. Default: 4.
        proj_num_groups (int): GroupNorm groups of the token projections.
            Default: 32.
        token_label_head (dict, optional): ViDT+'s token labeling,
            :class:`~vitdense.models.layers.TokenLabelHead` arguments
            (``embed_dims`` and ``num_classes`` default to the decoder's
            and the head's); None: off. Default: None.
        loss_token_label (dict): its loss,
            :class:`~vitdense.models.losses.TokenLabelLoss` (``num_classes``
            defaults to the head's). Default: the official focal + dice,
            weight 2 each.
        **kwargs: as ``DetectionTransformer`` (``num_queries`` must equal
            the backbone's number of [DET] tokens).
    """

    def __init__(self,
                 *args,
                 decoder: dict,
                 bbox_head: dict,
                 det_channels: int,
                 pos_channels: int,
                 with_box_refine: bool = True,
                 num_feature_levels: int = 4,
                 proj_num_groups: int = 32,
                 token_label_head: OptConfigType = None,
                 loss_token_label: dict = dict(
                     type='TokenLabelLoss', loss_weight=2.0),
                 **kwargs) -> None:
        num_classes = bbox_head['num_classes']
        self.token_label_cfg = None if token_label_head is None else dict(
            dict(embed_dims=decoder['layer_cfg']['self_attn_cfg'][
                'embed_dims'], num_classes=num_classes), **token_label_head)
        self.loss_token_label_cfg = dict(
            dict(num_classes=num_classes), **loss_token_label)
        self.with_box_refine = with_box_refine
        self.num_feature_levels = num_feature_levels
        self.det_channels = det_channels
        self.pos_channels = pos_channels
        self.proj_num_groups = proj_num_groups
        bbox_head = dict(
            bbox_head,
            share_pred_layer=not with_box_refine,
            num_pred_layer=decoder['num_layers'] + 1,
            as_two_stage=False)
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head, **kwargs)

    def _init_layers(self) -> None:
        self.decoder = DeformableDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.decoder.embed_dims
        self.query_proj = _token_proj(self.det_channels, self.embed_dims,
                                      self.proj_num_groups)
        self.query_pos_proj = _token_proj(self.pos_channels, self.embed_dims,
                                          self.proj_num_groups)
        self.reference_points_fc = nn.Linear(self.embed_dims, 2)
        self.with_token_label = self.token_label_cfg is not None
        if self.with_token_label:
            self.token_label_head = MODELS.build(self.token_label_cfg)
            self.loss_token_label = MODELS.build(self.loss_token_label_cfg)

    def init_weights(self) -> None:
        """The official initialisation: Xavier for the decoder's matrices,
        mmcv's deformable-attention init, Xavier + zero bias for the token
        projections, Xavier for the reference-point weight."""
        super().init_weights()
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.decoder.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        for proj in (self.query_proj, self.query_pos_proj):
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)
        nn.init.xavier_uniform_(self.reference_points_fc.weight)

    # ------------------------------------------------------------------
    # the backbone needs the padding mask, so the entry points pass the
    # data samples to feature extraction
    # ------------------------------------------------------------------
    @staticmethod
    def padding_mask(batch_inputs: Tensor,
                     batch_data_samples: OptSampleList) -> Optional[Tensor]:
        """(B, H, W) bool, True on the padding of each image; None when no
        image of the batch is padded (mmdet's Deformable-DETR rule)."""
        if not batch_data_samples:
            return None
        h, w = batch_inputs.shape[-2:]
        shapes = [s.img_shape for s in batch_data_samples]
        if all(s[0] >= h and s[1] >= w for s in shapes):
            return None
        mask = batch_inputs.new_ones((batch_inputs.size(0), h, w),
                                     dtype=torch.bool)
        for i, (img_h, img_w) in enumerate(shapes):
            mask[i, :img_h, :img_w] = False
        return mask

    def extract_feat(
        self,
        batch_inputs: Tensor,
        batch_data_samples: OptSampleList = None
    ) -> Tuple[List[Tensor], Tensor, Tensor, Optional[Tensor]]:
        """Projected feature maps, [DET] tokens ``(B, N, C_det)``, their
        positional embedding ``(1 or B, N, C_pos)`` and the padding mask."""
        mask = self.padding_mask(batch_inputs, batch_data_samples)
        feats, det_tokens, det_pos = self.backbone(batch_inputs, mask)
        feats = self.neck(list(feats)) if self.with_neck else feats
        if len(feats) != self.num_feature_levels:
            raise ValueError(
                f'{type(self).__name__}: the backbone (+ neck) gave '
                f'{len(feats)} feature levels, num_feature_levels is '
                f'{self.num_feature_levels}')
        return list(feats), det_tokens, det_pos, mask

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        img_feats = self.extract_feat(batch_inputs, batch_data_samples)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        losses = self.bbox_head.loss(
            **head_inputs, batch_data_samples=batch_data_samples)
        if self.with_token_label:
            losses.update(
                self.token_label_losses(img_feats, batch_inputs,
                                        batch_data_samples))
        return losses

    def token_label_losses(self, img_feats: tuple, batch_inputs: Tensor,
                           batch_data_samples: SampleList) -> dict:
        """ViDT+'s token labeling (official ``loss_tokens``): per-token
        class logits of the decoder memory against the ground-truth masks
        pooled to each level, over the number of ground-truth boxes."""
        feats, _, _, mask = img_feats
        decoder_inputs, _ = self.pre_transformer(feats, mask)
        logits = self.token_label_head(decoder_inputs['memory'],
                                       decoder_inputs['memory_mask'],
                                       decoder_inputs['spatial_shapes'])
        gt_masks = gt_masks_from_samples(batch_data_samples,
                                         batch_inputs.shape[-2:],
                                         'token_label_head',
                                         batch_inputs.device)
        gt_labels = [s.gt_instances.labels for s in batch_data_samples]
        num_gts = sum(len(labels) for labels in gt_labels)
        avg_factor = torch.clamp(
            reduce_mean(batch_inputs.new_tensor([num_gts])), min=1).item()
        return self.loss_token_label(logits, gt_masks, gt_labels, avg_factor)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        head_inputs = self.forward_transformer(
            self.extract_feat(batch_inputs, batch_data_samples),
            batch_data_samples)
        results = self.bbox_head.predict(
            **head_inputs,
            rescale=rescale,
            batch_data_samples=batch_data_samples)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[Tensor]:
        head_inputs = self.forward_transformer(
            self.extract_feat(batch_inputs, batch_data_samples),
            batch_data_samples)
        return self.bbox_head.forward(**head_inputs)

    # ------------------------------------------------------------------
    # transformer
    # ------------------------------------------------------------------
    def forward_transformer(self,
                            img_feats: tuple,
                            batch_data_samples: OptSampleList = None
                            ) -> Dict:
        """``img_feats`` is what :meth:`extract_feat` returns; no encoder."""
        feats, det_tokens, det_pos, mask = img_feats
        decoder_inputs, _ = self.pre_transformer(feats, mask)
        query_inputs, head_inputs = self.pre_decoder(det_tokens, det_pos)
        decoder_inputs.update(query_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_transformer(self, mlvl_feats: List[Tensor],
                        mask: Optional[Tensor]) -> Tuple[Dict, Dict]:
        """Flattened memory ``(B, sum HW, C)`` with its padding mask (the
        image mask resized to each level, nearest), spatial shapes, level
        starts and valid ratios, as mmdet's Deformable DETR and the
        official ``DeformableTransformer.forward``."""
        batch_size = mlvl_feats[0].size(0)
        memory, masks, shapes = [], [], []
        for feat in mlvl_feats:
            memory.append(feat.flatten(2).transpose(1, 2))
            shapes.append(torch._shape_as_tensor(feat)[2:].to(feat.device))
            if mask is not None:
                masks.append(
                    F.interpolate(mask[None].float(),
                                  size=feat.shape[-2:]).to(torch.bool)[0])
        spatial_shapes = torch.cat(shapes).view(-1, 2)
        level_start_index = torch.cat((spatial_shapes.new_zeros(
            (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if mask is None:
            memory_mask = None
            valid_ratios = mlvl_feats[0].new_ones(batch_size, len(mlvl_feats),
                                                  2)
        else:
            memory_mask = torch.cat([m.flatten(1) for m in masks], 1)
            valid_ratios = torch.stack(
                [DeformableDETR.get_valid_ratio(m) for m in masks], 1)
        decoder_inputs = dict(
            memory=torch.cat(memory, 1),
            memory_mask=memory_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios)
        return decoder_inputs, dict()

    def forward_encoder(self, *args, **kwargs) -> Dict:
        raise NotImplementedError('ViDT has no transformer encoder')

    def pre_decoder(self, det_tokens: Tensor,
                    det_pos: Tensor) -> Tuple[Dict, Dict]:
        """Queries from the [DET] tokens, positional queries from their
        embedding, reference points ``sigmoid(Linear(query_pos))``."""
        batch_size, num_tokens = det_tokens.shape[:2]
        if num_tokens != self.num_queries:
            raise ValueError(
                f'{type(self).__name__}: the backbone gave {num_tokens} [DET] '
                f'tokens but num_queries is {self.num_queries}; set both '
                '(backbone.det_token_num) to the same number')
        query = self._project(self.query_proj, det_tokens)
        query_pos = self._project(self.query_pos_proj,
                                  det_pos).expand(batch_size, -1, -1)
        reference_points = self.reference_points_fc(query_pos).sigmoid()
        head_inputs = dict(
            enc_outputs_class=None,
            enc_outputs_coord=None) if self.training else dict()
        return dict(
            query=query,
            query_pos=query_pos,
            reference_points=reference_points), head_inputs

    @staticmethod
    def _project(proj: nn.Sequential, tokens: Tensor) -> Tensor:
        """(B, N, C) tokens through a 1x1 conv + GroupNorm as a (B, C, N, 1)
        map -> (B, N, embed_dims)."""
        out = proj(tokens.transpose(1, 2).unsqueeze(-1))
        return out.squeeze(-1).transpose(1, 2)

    def forward_decoder(self, query: Tensor, query_pos: Tensor,
                        memory: Tensor, memory_mask: Optional[Tensor],
                        reference_points: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """The [DET] tokens are prediction layer 0 (``hidden_states[0]``);
        with box refinement its box branch turns the 2-d reference points
        into the boxes the first decoder layer starts from."""
        reg_branches = self.bbox_head.reg_branches
        init_reference = reference_points
        if self.with_box_refine:
            delta = reg_branches[0](query)
            reference_points = torch.cat(
                (delta[..., :2] + inverse_sigmoid(init_reference),
                 delta[..., 2:]), -1).sigmoid().detach()
        hidden_states, inter_references = self.decoder(
            query=query,
            value=memory,
            query_pos=query_pos,
            key_padding_mask=memory_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=reg_branches[1:] if self.with_box_refine else None)
        # prediction layer i > 0 adds the reference its decoder layer read
        references = [init_reference, reference_points,
                      *inter_references[:-1]]
        return dict(
            hidden_states=torch.cat((query[None], hidden_states)),
            references=references)
