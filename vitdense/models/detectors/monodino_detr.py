"""MonoDINO-DETR: monocular 3D detection on a DINOv2 + DPT backbone.

"MonoDINO-DETR: Depth-Enhanced Monocular 3D Object Detection Using a Vision
Foundation Model" (Kim et al., IEEE IV 2025, arXiv:2502.00315); official code
https://github.com/JihyeokKim/MonoDINO-DETR (``lib/models/monodinodetr/
monodinodetr.py``, ``MonoDINODETR``), a MonoDETR (ICCV 2023,
arXiv:2203.13310) fork.

The network (:meth:`MonoDINODETR.forward_outputs`) computes exactly the
official outputs dict (same keys and shapes; parity-tested): the backbone's
last three ViT maps fused into a x4/x2/x1 pyramid, a depth predictor on the
DPT relative depth, a deformable visual encoder, the depth-aware decoder
with DAB 6-d anchors and box refinement, and per-layer heads (class, 6-d
box, 3D dimensions, 24 heading logits, depth + log variance). Different from
the official code: no device or path is hard-coded, any width and group
count runs (see :mod:`vitdense.models.layers.monodino_detr_layers`), and the
deformable attention is vitdense's (CPU kernel, CUDA). Training losses and
decoding are :class:`vitdense.models.losses.MonoDINODETRCriterion`.

With a ``neck`` and ``use_dab=False`` the same class is the parent MonoDETR
(CNN levels, depth predictor on the levels, Deformable-DETR queries); the
registered :class:`vitdense.models.detectors.MonoDETR` sets that up.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.models.layers import (DeformableDetrTransformerEncoder,
                                 SinePositionalEncoding)
from mmdet.models.layers.transformer.utils import MLP
from mmdet.structures import SampleList
from mmengine.model import bias_init_with_prob
from torch import Tensor, nn

from vitdense.models.layers.monodino_detr_layers import (
    DepthAwareDecoder, DepthPredictor, HierarchicalFeatureFusion,
    MonoDETRDepthPredictor)
from vitdense.ops import MultiScaleDeformableAttention, convert_mmcv_msda
from vitdense.registry import MODELS

__all__ = ['MonoDINODETR']

#: 12 heading bins + 12 residuals (MonoDLE multi-bin on alpha)
NUM_HEADING_OUTPUTS = 24


@MODELS.register_module()
class MonoDINODETR(BaseDetector):
    """MonoDINO-DETR detector (official ``MonoDINODETR`` + its
    ``SetCriterion`` and decoding through ``criterion``).

    Inputs follow the KITTI data contract: ``data_samples`` carry
    ``ori_cam2img`` (the file's P2; its ``f_u`` scales the geometric depth)
    and ``ori_shape`` (the file's size; the 2D box height is measured in it),
    as the official model is given ``calibs`` and ``img_size``.

    Args:
        backbone (dict): a backbone returning ``(feature maps, relative
            depth)``, e.g. ``dict(type='DepthAnythingV2', arch='vitb',
            input_size=518)``; the last ``len(fusion_scales)`` maps are used.
        neck (dict, optional): maps the backbone's maps to the pyramid
            levels instead of the hierarchical fusion (MonoDETR: mmdet's
            ``ChannelMapper``, its ``num_outs`` levels); the depth predictor
            is then :class:`~vitdense.models.layers.monodino_detr_layers.
            MonoDETRDepthPredictor`, fed by the levels. Default: None.
        num_classes (int): Default: 3.
        embed_dims (int): transformer width. Default: 256.
        num_heads (int): Default: 8.
        feedforward_channels (int): FFN width of encoder and decoder.
            Default: 256.
        dropout (float): Default: 0.1.
        num_points (int): deformable sampling points. Default: 4.
        num_encoder_layers, num_decoder_layers (int): Default: 3, 3.
        num_queries (int): queries per group. Default: 50.
        num_groups (int): query groups in training (one-to-many Group DETR);
            only the first group runs in eval. Default: 11.
        use_dab (bool): DAB queries (learnt content and 6-d anchors whose
            sine embedding gives the positional query). False: MonoDETR's
            Deformable-DETR queries (learnt position and content, 2-d
            reference points from the position). Default: True.
        fusion_scales (Sequence[int]): upsampling of each level. Default:
            (4, 2, 1).
        fusion_channels (Sequence[int], optional): width before each
            upsampling (entries of scale-1 levels unused). Default: the
            backbone DPT head's widths of the same levels, as the official
            (``num_channels`` of the variant; ViT-B: 192, 384, 768).
        depth_predictor (dict, optional): overrides of
            :class:`~vitdense.models.layers.monodino_detr_layers.
            DepthPredictor` (``num_depth_bins`` 80, ``depth_min`` 1e-3,
            ``depth_max`` 60, encoder ``num_heads`` 8 and
            ``feedforward_channels`` 256).
        criterion (dict, optional): losses and decoding, default
            ``dict(type='MonoDINODETRCriterion')``; ``num_classes`` and
            ``group_num`` are filled in from this detector.
        data_preprocessor (dict, optional): e.g. mmdet's
            ``DetDataPreprocessor`` with ImageNet mean/std, ``bgr_to_rgb``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 num_classes: int = 3,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_channels: int = 256,
                 dropout: float = 0.1,
                 num_points: int = 4,
                 num_encoder_layers: int = 3,
                 num_decoder_layers: int = 3,
                 num_queries: int = 50,
                 num_groups: int = 11,
                 use_dab: bool = True,
                 fusion_scales: Sequence[int] = (4, 2, 1),
                 fusion_channels: Optional[Sequence[int]] = None,
                 depth_predictor: Optional[dict] = None,
                 criterion: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_groups = num_groups
        self.use_dab = use_dab
        self.backbone = MODELS.build(backbone)
        if neck is None:
            self.num_levels = len(fusion_scales)
            if fusion_channels is None:
                fusion_channels = self._dpt_channels()[-self.num_levels:]
            self.feature_fusion = HierarchicalFeatureFusion(
                self.backbone.embed_dims, embed_dims, fusion_scales,
                fusion_channels)
        else:
            if 'num_outs' not in neck:
                raise KeyError('MonoDINODETR: the neck config needs num_outs '
                               '(the number of pyramid levels)')
            self.num_levels = neck['num_outs']
            self.neck = MODELS.build(neck)
        self.positional_encoding = SinePositionalEncoding(
            num_feats=embed_dims // 2, normalize=True)
        predictor = DepthPredictor if neck is None else MonoDETRDepthPredictor
        self.depth_predictor = predictor(
            embed_dims, dropout=dropout, **(depth_predictor or {}))
        self.level_embed = nn.Parameter(
            torch.empty(self.num_levels, embed_dims))
        self.encoder = DeformableDetrTransformerEncoder(
            num_layers=num_encoder_layers,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=embed_dims,
                    num_heads=num_heads,
                    num_levels=self.num_levels,
                    num_points=num_points,
                    dropout=dropout,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=embed_dims,
                    feedforward_channels=feedforward_channels,
                    ffn_drop=dropout)))
        # mmdet builds mmcv's MSDA; run vitdense's (same keys, CPU kernel)
        convert_mmcv_msda(self.encoder)
        self.decoder = DepthAwareDecoder(
            num_decoder_layers,
            dict(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=feedforward_channels,
                dropout=dropout,
                num_levels=self.num_levels,
                num_points=num_points),
            use_dab=use_dab)
        if use_dab:
            # learnt content queries and 6-d anchors (x, y, l, r, t, b)
            self.query_embedding = nn.Embedding(num_queries * num_groups,
                                                embed_dims)
            self.anchor_embedding = nn.Embedding(num_queries * num_groups, 6)
        else:
            # learnt (position, content) pairs; 2-d reference points from
            # the position (official ``query_embed``, ``reference_points``)
            self.query_embedding = nn.Embedding(num_queries * num_groups,
                                                2 * embed_dims)
            self.reference_points = nn.Linear(embed_dims, 2)

        def per_layer(make) -> nn.ModuleList:
            return nn.ModuleList(make() for _ in range(num_decoder_layers))

        self.cls_branches = per_layer(
            lambda: nn.Linear(embed_dims, num_classes))
        self.reg_branches = per_layer(
            lambda: MLP(embed_dims, embed_dims, 6, 3))
        self.dim_branches = per_layer(
            lambda: MLP(embed_dims, embed_dims, 3, 2))
        self.angle_branches = per_layer(
            lambda: MLP(embed_dims, embed_dims, NUM_HEADING_OUTPUTS, 2))
        self.depth_branches = per_layer(
            lambda: MLP(embed_dims, embed_dims, 2, 2))

        criterion = dict(type='MonoDINODETRCriterion', **(criterion or {}))
        criterion.setdefault('num_classes', num_classes)
        criterion.setdefault('group_num', num_groups)
        self.criterion = MODELS.build(criterion)

    def _dpt_channels(self) -> List[int]:
        """Widths of the backbone's DPT reassemble projections."""
        head = getattr(self.backbone, 'depth_head', None)
        if head is None or not hasattr(head, 'projects'):
            raise ValueError(
                f'MonoDINODETR: fusion_channels not given and the backbone '
                f'{type(self.backbone).__name__} has no DPT depth_head to '
                'take them from')
        return [proj.out_channels for proj in head.projects]

    def init_weights(self) -> None:
        """The official initialisation: Xavier on every matrix of the
        encoder and decoder, MSDA's own init, level embedding N(0, 1); the
        focal prior (0.01) on the class biases; -2 on the (l, r, t, b) bias
        of the first box head; without DAB, Xavier and zero bias on the
        reference-point head; with a neck, Xavier and zero bias on its convs
        (the official ``input_proj``); PyTorch defaults elsewhere."""
        super().init_weights()
        for part in (self.encoder, self.decoder):
            for p in part.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            for m in part.modules():
                if isinstance(m, MultiScaleDeformableAttention):
                    m.init_weights()
        if not self.use_dab:
            nn.init.xavier_uniform_(self.reference_points.weight)
            nn.init.zeros_(self.reference_points.bias)
        if self.with_neck:
            for m in self.neck.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.level_embed)
        for branch in self.cls_branches:
            nn.init.constant_(branch.bias, bias_init_with_prob(0.01))
        nn.init.constant_(self.reg_branches[0].layers[-1].bias.data[2:], -2.0)

    # ------------------------------------------------------------------
    # network
    # ------------------------------------------------------------------
    def extract_feat(self, images: Tensor) -> Tuple[List[Tensor], Tensor]:
        """(B, 3, H, W) -> pyramid levels (B, C, h_l, w_l) and the depth
        predictor's input: the relative depth (B, 1, H_d, W_d), or with a
        neck the levels themselves."""
        if self.with_neck:
            levels = list(self.neck(self.backbone(images)))
            return levels, levels
        feats, depth = self.backbone(images)
        if depth is None:
            raise ValueError('MonoDINODETR needs the backbone\'s relative '
                             'depth (a DPT head); the backbone returned None')
        return self.feature_fusion(feats[-self.num_levels:]), depth

    def forward_outputs(self, images: Tensor, calibs: Tensor,
                        img_sizes: Tensor) -> Dict[str, Union[Tensor, list]]:
        """The official network forward.

        Args:
            images (Tensor): (B, 3, H, W) normalised RGB.
            calibs (Tensor): (B, 3, 4) camera matrices (``P2``); only f_u
                (``[:, 0, 0]``) is used, for the geometric depth.
            img_sizes (Tensor): (B, 2) image (width, height) in which the
                geometric depth measures the 2D box height.

        Returns:
            dict: the official outputs of the last decoder layer,
            ``pred_logits`` (B, Q, num_classes), ``pred_boxes`` (B, Q, 6)
            (x, y, l, r, t, b) normalised, ``pred_3d_dim`` (B, Q, 3)
            (h, w, l), ``pred_depth`` (B, Q, 2) (depth, log variance),
            ``pred_angle`` (B, Q, 24), ``pred_depth_map_logits``
            (B, num_depth_bins + 1, h, w), and ``aux_outputs``: the same
            five per earlier layer. Q = ``num_queries`` x ``num_groups`` in
            training, ``num_queries`` in eval.
        """
        srcs, depth_input = self.extract_feat(images)
        bs = images.shape[0]
        pos = [self.positional_encoding(None, input=src) for src in srcs]
        depth_logits, depth_embed, weighted_depth = self.depth_predictor(
            depth_input, pos[self.depth_predictor.pos_level])

        spatial_shapes = torch.as_tensor([src.shape[-2:] for src in srcs],
                                         dtype=torch.long,
                                         device=images.device)
        level_start_index = torch.cat([
            spatial_shapes.new_zeros(1),
            spatial_shapes.prod(1).cumsum(0)[:-1]
        ])
        memory = self.encoder(
            query=torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1),
            query_pos=torch.cat([
                p.flatten(2).transpose(1, 2) + self.level_embed[i]
                for i, p in enumerate(pos)
            ], 1),
            key_padding_mask=None,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            # nothing is padded inside the model (the official masks are
            # all False), so every level is wholly valid
            valid_ratios=images.new_ones(bs, self.num_levels, 2))

        num_groups = self.num_groups if self.training else 1
        num = self.num_queries * num_groups
        query = self.query_embedding.weight[:num].expand(bs, -1, -1)
        if self.use_dab:
            query_pos = None
            anchors = self.anchor_embedding.weight[:num].sigmoid().expand(
                bs, -1, -1)
        else:
            query_pos, query = query.split(self.decoder.embed_dims, -1)
            anchors = self.reference_points(query_pos).sigmoid()
        hidden, boxes, dims = self.decoder(
            query,
            anchors,
            memory,
            depth_embed,
            spatial_shapes,
            level_start_index,
            self.reg_branches,
            self.dim_branches,
            num_groups,
            query_pos=query_pos)

        img_h = img_sizes[:, 1:2].to(boxes.dtype)
        f_u = calibs[:, 0, 0:1].to(boxes.dtype)
        layers = []
        for lid in range(len(hidden)):
            box, dim, hs = boxes[lid], dims[lid], hidden[lid]
            # depth: mean of direct, geometric (f_u * H3d / h2d) and the
            # depth map at the projected centre; + log variance
            box_height = ((box[..., 4] + box[..., 5]) * img_h).clamp(min=1.0)
            depth_geo = dim[..., 0] / box_height * f_u
            depth_reg = self.depth_branches[lid](hs)
            centre = ((box[..., :2] - 0.5) * 2).unsqueeze(2).detach()
            depth_map = F.grid_sample(
                weighted_depth.unsqueeze(1),
                centre,
                mode='bilinear',
                align_corners=True).squeeze(1)  # (B, Q, 1)
            depth_direct = 1. / (depth_reg[..., :1].sigmoid() + 1e-6) - 1.
            depth = torch.cat([
                (depth_direct + depth_geo.unsqueeze(-1) + depth_map) / 3,
                depth_reg[..., 1:2]
            ], -1)
            layers.append(
                dict(
                    pred_logits=self.cls_branches[lid](hs),
                    pred_boxes=box,
                    pred_3d_dim=dim,
                    pred_angle=self.angle_branches[lid](hs),
                    pred_depth=depth))
        outputs = dict(layers[-1])
        outputs['pred_depth_map_logits'] = depth_logits
        outputs['aux_outputs'] = layers[:-1]
        return outputs

    # ------------------------------------------------------------------
    # mmdet detector interface
    # ------------------------------------------------------------------
    @staticmethod
    def _calibs_and_sizes(batch_inputs: Tensor,
                          data_samples: SampleList) -> Tuple[Tensor, Tensor]:
        """``ori_cam2img`` (B, 3, 4) and the original (width, height) of
        each image, as the official ``calibs`` and ``img_size``."""
        calibs, sizes = [], []
        for sample in data_samples:
            meta = sample.metainfo
            if 'ori_cam2img' not in meta or 'ori_shape' not in meta:
                raise KeyError('MonoDINODETR needs ori_cam2img and ori_shape '
                               'in the data samples (KITTI data contract, '
                               'PackMono3DInputs)')
            calibs.append(torch.as_tensor(meta['ori_cam2img'],
                                          dtype=torch.float32)[:3, :4])
            height, width = meta['ori_shape'][:2]
            sizes.append([width, height])
        device = batch_inputs.device
        return torch.stack(calibs).to(device), torch.as_tensor(
            sizes, dtype=torch.float32, device=device)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList) -> Dict:
        """The official outputs dict (``mode='tensor'``)."""
        calibs, sizes = self._calibs_and_sizes(batch_inputs,
                                               batch_data_samples)
        return self.forward_outputs(batch_inputs, calibs, sizes)

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Weighted losses of all decoder layers (``criterion``)."""
        outputs = self._forward(batch_inputs, batch_data_samples)
        return self.criterion(outputs, batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Sets ``pred_instances_3d`` (camera frame of the original image,
        KITTI data contract) on each data sample. The decoding always maps
        back to the original image, so ``rescale`` has no effect."""
        outputs = self._forward(batch_inputs, batch_data_samples)
        results = self.criterion.decode(
            outputs, [s.metainfo for s in batch_data_samples])
        for sample, result in zip(batch_data_samples, results):
            sample.pred_instances_3d = result
        return batch_data_samples
