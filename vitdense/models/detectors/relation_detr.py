"""Relation-DETR and "DINO + relation" on mmdet 3.x.

Relation-DETR: "Relation DETR: Exploring Explicit Position Relation Prior for
Object Detection" (Hou et al., ECCV 2024, arXiv:2407.11699); official code
https://github.com/xiuqhou/Relation-DETR
(``models/detectors/relation_detr.py``,
``models/bricks/relation_transformer.py``).

Built from mmdet's DINO (CDN denoising, two-stage mixed query selection with
0.05 * 2**lvl proposals, look-forward-twice refinement, Hungarian matching);
the additions live in ``vitdense.models.layers.relation_detr_layers`` (memory
fusion, position relation) and ``vitdense.models.dense_heads.
relation_detr_head`` (IoU-aware varifocal loss, hybrid losses). Different from
the official code: images are padded by mmdet's data preprocessor instead of
inside the model, and a batch of equal-size images carries no padding mask
(as in mmdet's DINO), which changes nothing numerically.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.detectors import DINO
from mmdet.models.layers import SinePositionalEncoding
from mmdet.structures import OptSampleList
from torch import Tensor, nn

from vitdense.models.detectors.dino import VitdenseMSDAMixin
from vitdense.models.layers.relation_detr_layers import (
    RelationDetrTransformerDecoder, RelationDetrTransformerEncoder)
from vitdense.registry import MODELS


@MODELS.register_module()
class RelationDINO(VitdenseMSDAMixin, DINO):
    """mmdet's DINO with the position-relation attention bias plugged in.

    This is the paper's "DINO + relation": a standard mmdet DINO config with
    ``type='RelationDINO'`` (``decoder.relation=True`` by default; the
    decoder's ``query_scale`` is off here, as in DINO). With
    ``decoder.relation=False`` it is mmdet's DINO with the sine-encoding width
    fixed to ``embed_dims // 2``, so any transformer width works.
    """

    def __init__(self, *args, decoder: dict, **kwargs) -> None:
        decoder = dict(decoder)
        decoder.setdefault('query_scale', False)
        super().__init__(*args, decoder=decoder, **kwargs)

    def _build_encoder(self, cfg: dict) -> nn.Module:
        return RelationDetrTransformerEncoder(memory_fusion=False, **cfg)

    def _init_layers(self) -> None:
        self.positional_encoding = SinePositionalEncoding(
            **self.positional_encoding)
        self.encoder = self._build_encoder(self.encoder)
        self.decoder = RelationDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        assert num_feats * 2 == self.embed_dims, \
            f'embed_dims ({self.embed_dims}) must be 2 * num_feats ' \
            f'({num_feats})'
        self.level_embed = nn.Parameter(
            torch.Tensor(self.num_feature_levels, self.embed_dims))
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        if self.decoder.with_relation:
            # PyTorch's default conv init, as the official module (DINO's
            # init_weights would xavier-init it with the decoder)
            self.decoder.position_relation_embedding.pos_proj[
                0].reset_parameters()


@MODELS.register_module()
class RelationDETR(RelationDINO):
    """Relation-DETR: DINO + memory fusion + position relation + hybrid
    one-to-many branch + IoU-aware varifocal loss.

    Args:
        num_hybrid_queries (int): queries of the training-only hybrid branch
            (their own encoder heads and top-k, the same decoder without the
            relation bias, ground truth repeated ``bbox_head.hybrid_assign``
            times). 0 disables the branch. Defaults to 1500.
        *args, **kwargs: as mmdet's ``DINO`` (``decoder.query_scale`` defaults
            to True here, as in the official decoder).
    """

    def __init__(self,
                 *args,
                 decoder: dict,
                 num_hybrid_queries: int = 1500,
                 **kwargs) -> None:
        self.num_hybrid_queries = num_hybrid_queries
        decoder = dict(decoder)
        decoder.setdefault('query_scale', True)
        super().__init__(*args, decoder=decoder, **kwargs)
        if num_hybrid_queries > 0:
            assert self.bbox_head.hybrid_assign > 0, \
                'the hybrid branch needs bbox_head.hybrid_assign > 0'

    def _build_encoder(self, cfg: dict) -> nn.Module:
        return RelationDetrTransformerEncoder(memory_fusion=True, **cfg)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.num_hybrid_queries > 0:
            self.hybrid_query_embedding = nn.Embedding(
                self.num_hybrid_queries, self.embed_dims)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.normal_(self.query_embedding.weight)
        if self.num_hybrid_queries > 0:
            nn.init.normal_(self.hybrid_query_embedding.weight)

    @staticmethod
    def _select_topk(cls_branch: nn.Module, reg_branch: nn.Module,
                     output_memory: Tensor, output_proposals: Tensor,
                     k: int) -> Tuple[Tensor, Tensor]:
        """Top-k encoder proposals: logits ``(B, k, C)``, boxes ``(B, k, 4)``
        (cxcywh, not sigmoid-ed). ``k`` is capped at the number of encoder
        tokens, as in the official code, so small images work."""
        enc_class = cls_branch(output_memory)
        enc_coord_unact = reg_branch(output_memory) + output_proposals
        k = min(k, output_memory.size(1))
        topk = torch.topk(enc_class.max(-1)[0], k=k, dim=1)[1].unsqueeze(-1)
        topk_class = enc_class.gather(1, topk.expand(-1, -1,
                                                     enc_class.size(-1)))
        topk_coord_unact = enc_coord_unact.gather(1, topk.expand(-1, -1, 4))
        return topk_class, topk_coord_unact

    def pre_decoder(
        self,
        memory: Tensor,
        memory_mask: Optional[Tensor],
        spatial_shapes: Tensor,
        batch_data_samples: OptSampleList = None,
    ) -> Tuple[Dict, Dict]:
        """DINO's query selection, plus the hybrid queries in training."""
        bs = memory.size(0)
        num_layers = self.decoder.num_layers
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        topk_score, topk_coords_unact = self._select_topk(
            self.bbox_head.cls_branches[num_layers],
            self.bbox_head.reg_branches[num_layers], output_memory,
            output_proposals, self.num_queries)
        topk_coords = topk_coords_unact.sigmoid()

        num_queries = topk_coords.size(1)
        query = self.query_embedding.weight[:num_queries].unsqueeze(0).expand(
            bs, -1, -1)
        reference_points = topk_coords.detach()
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
            query = torch.cat([dn_label_query, query], dim=1)
            reference_points = torch.cat(
                [dn_bbox_query.sigmoid(), reference_points], dim=1)
        else:
            dn_mask, dn_meta = None, None

        decoder_inputs_dict = dict(
            query=query,
            memory=memory,
            reference_points=reference_points,
            dn_mask=dn_mask)
        if not self.training:
            return decoder_inputs_dict, dict()

        head_inputs_dict = dict(
            enc_outputs_class=topk_score,
            enc_outputs_coord=topk_coords,
            dn_meta=dn_meta)
        if self.num_hybrid_queries > 0:
            hybrid_score, hybrid_coords_unact = self._select_topk(
                self.bbox_head.hybrid_cls_branch,
                self.bbox_head.hybrid_reg_branch, output_memory,
                output_proposals, self.num_hybrid_queries)
            hybrid_coords = hybrid_coords_unact.sigmoid()
            hybrid_query = self.hybrid_query_embedding.weight[:hybrid_coords.
                                                              size(1)]
            head_inputs_dict.update(
                hybrid_enc_outputs_class=hybrid_score,
                hybrid_enc_outputs_coord=hybrid_coords)
            decoder_inputs_dict.update(
                hybrid_query=hybrid_query.unsqueeze(0).expand(bs, -1, -1),
                hybrid_reference_points=hybrid_coords.detach())
        return decoder_inputs_dict, head_inputs_dict

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Optional[Tensor],
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        hybrid_query: Optional[Tensor] = None,
                        hybrid_reference_points: Optional[Tensor] = None
                        ) -> Dict:
        """Matching (+ denoising) queries with the relation bias; in training
        also the hybrid queries through the same decoder without it."""
        shared = dict(
            value=memory,
            key_padding_mask=memory_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches)
        hidden_states, references = self.decoder(
            query=query,
            self_attn_mask=dn_mask,
            reference_points=reference_points,
            **shared)
        # keep the denoising label embedding in the graph when a batch has
        # no ground truth (unused parameters break distributed training)
        hidden_states[0] += \
            self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
        outputs = dict(
            hidden_states=hidden_states, references=list(references))
        if hybrid_query is not None:
            hybrid_states, hybrid_refs = self.decoder(
                query=hybrid_query,
                self_attn_mask=None,
                reference_points=hybrid_reference_points,
                skip_relation=True,
                **shared)
            outputs.update(
                hybrid_hidden_states=hybrid_states,
                hybrid_references=list(hybrid_refs))
        return outputs


# ----------------------------------------------------------------------------
# official checkpoint -> vitdense
# ----------------------------------------------------------------------------
_DECODER_LAYER_RENAMES = (
    ('self_attn.in_proj_', 'self_attn.attn.in_proj_'),
    ('self_attn.out_proj.', 'self_attn.attn.out_proj.'),
    ('norm2.', 'norms.0.'),
    ('norm1.', 'norms.1.'),
    ('norm3.', 'norms.2.'),
    ('linear1.', 'ffn.layers.0.0.'),
    ('linear2.', 'ffn.layers.1.'),
)
_ENCODER_LAYER_RENAMES = (
    ('norm1.', 'norms.0.'),
    ('norm2.', 'norms.1.'),
    ('linear1.', 'ffn.layers.0.0.'),
    ('linear2.', 'ffn.layers.1.'),
)
# official (transformer.)name -> vitdense name for whole-module renames
_TRANSFORMER_RENAMES = (
    ('level_embeds', 'level_embed'),
    ('enc_output.', 'memory_trans_fc.'),
    ('enc_output_norm.', 'memory_trans_norm.'),
    ('tgt_embed.', 'query_embedding.'),
    ('hybrid_tgt_embed.', 'hybrid_query_embedding.'),
    ('hybrid_class_head.', 'bbox_head.hybrid_cls_branch.'),
    ('encoder.memory_fusion.', 'encoder.memory_fusion.'),
    ('decoder.ref_point_head.', 'decoder.ref_point_head.'),
    ('decoder.query_scale.', 'decoder.query_scale.'),
    ('decoder.norm.', 'decoder.norm.'),
    ('decoder.position_relation_embedding.',
     'decoder.position_relation_embedding.'),
)


def _mlp_to_sequential(rest: str) -> str:
    """``layers.{j}.x`` of the official MLP -> ``{2j}.x`` of mmdet's
    Linear/ReLU Sequential."""
    m = re.fullmatch(r'layers\.(\d+)\.(.+)', rest)
    return f'{2 * int(m.group(1))}.{m.group(2)}'


def convert_relation_detr_official(
        state_dict: Dict[str, Tensor],
        class_index: Optional[Tensor] = None) -> 'OrderedDict[str, Tensor]':
    """Map an official Relation-DETR state dict onto :class:`RelationDETR`.

    Covers the transformer, heads, denoising embedding, ``ChannelMapper`` neck
    and the ResNet backbone (whose official keys already match mmdet's
    ``ResNet``); keys of other backbones are passed through under
    ``backbone.``.

    Args:
        state_dict: official ``model.state_dict()`` (``_classes_`` buffers
            are dropped).
        class_index: optional 1-D index into the class dimension (e.g. the 80
            COCO category ids of the official 91-way heads) applied to every
            class head and the denoising label embedding.

    Returns:
        OrderedDict loadable with ``strict=True``.
    """
    num_layers = 1 + max(
        int(m.group(1)) for k in state_dict
        if (m := re.match(r'transformer\.decoder\.class_head\.(\d+)\.', k)))
    neck_kernel = {
        int(m.group(1)): v.shape[-1]
        for k, v in state_dict.items()
        if (m := re.fullmatch(r'neck\.convs\.(\d+)\.0\.weight', k))
    }
    num_lateral = sum(1 for ks in neck_kernel.values() if ks == 1)

    out = OrderedDict()
    for key, value in state_dict.items():
        new = None
        is_class = False
        if key.endswith('_classes_'):
            continue
        if key.startswith('backbone.'):
            new = key
        elif m := re.fullmatch(r'neck\.convs\.(\d+)\.([01])\.(.+)', key):
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            name = 'conv' if part == '0' else 'gn'
            new = (f'neck.convs.{i}.{name}.{rest}' if i < num_lateral else
                   f'neck.extra_convs.{i - num_lateral}.{name}.{rest}')
        elif key == 'denoising_generator.label_encoder.weight':
            new, is_class = 'dn_query_generator.label_embedding.weight', True
        elif key.startswith('transformer.'):
            name = key[len('transformer.'):]
            if m := re.fullmatch(r'encoder\.layers\.(\d+)\.(.+)', name):
                rest = m.group(2)
                for old, rep in _ENCODER_LAYER_RENAMES:
                    if rest.startswith(old):
                        rest = rep + rest[len(old):]
                        break
                new = f'encoder.layers.{m.group(1)}.{rest}'
            elif m := re.fullmatch(r'decoder\.layers\.(\d+)\.(.+)', name):
                rest = m.group(2)
                for old, rep in _DECODER_LAYER_RENAMES:
                    if rest.startswith(old):
                        rest = rep + rest[len(old):]
                        break
                new = f'decoder.layers.{m.group(1)}.{rest}'
            elif m := re.fullmatch(r'decoder\.class_head\.(\d+)\.(.+)', name):
                new, is_class = f'bbox_head.cls_branches.{m.group(1)}.' \
                                f'{m.group(2)}', True
            elif m := re.fullmatch(r'decoder\.bbox_head\.(\d+)\.(.+)', name):
                new = f'bbox_head.reg_branches.{m.group(1)}.' + \
                      _mlp_to_sequential(m.group(2))
            elif name.startswith('encoder_class_head.'):
                new, is_class = f'bbox_head.cls_branches.{num_layers}.' + \
                                name[len('encoder_class_head.'):], True
            elif name.startswith('encoder_bbox_head.'):
                new = f'bbox_head.reg_branches.{num_layers}.' + \
                      _mlp_to_sequential(name[len('encoder_bbox_head.'):])
            elif name.startswith('hybrid_bbox_head.'):
                new = 'bbox_head.hybrid_reg_branch.' + \
                      _mlp_to_sequential(name[len('hybrid_bbox_head.'):])
            else:
                for old, rep in _TRANSFORMER_RENAMES:
                    if name == old or name.startswith(old):
                        new = rep + name[len(old):]
                        is_class = old == 'hybrid_class_head.'
                        break
        if new is None:
            raise KeyError(f'unexpected key in official checkpoint: {key}')
        if is_class and class_index is not None:
            value = value[class_index.to(value.device)]
        out[new] = value
    return out


# ----------------------------------------------------------------------------
# HF transformers checkpoint -> official -> vitdense
# ----------------------------------------------------------------------------
# ``RelationDetrForObjectDetection`` of the HF transformers port
# (huggingface/transformers PR #34900: models/relation_detr/
# modeling_relation_detr.py @74a14c3, convert_relation_detr_weights_to_hf.py
# @9ed57d2; checkpoint hf.co/xiuqhou/relation-detr-resnet50). Each pattern
# must match a whole key; the template gives the official key. Earlier
# revisions of the port named ``encoder_output(_norm)`` ``enc_output(_norm)``.
_W = r'\.(?P<param>weight|bias)'
_MSDA = r'(sampling_offsets|attention_weights|value_proj|output_proj)'
_HF_TO_OFFICIAL = (
    (r'model\.encoder\.layers\.(\d+)\.self_attn\.' + _MSDA + _W,
     r'transformer.encoder.layers.\1.self_attn.\2.\g<param>'),
    (r'model\.encoder\.layers\.(\d+)\.self_attn_layer_norm' + _W,
     r'transformer.encoder.layers.\1.norm1.\g<param>'),
    (r'model\.encoder\.layers\.(\d+)\.final_layer_norm' + _W,
     r'transformer.encoder.layers.\1.norm2.\g<param>'),
    (r'model\.(encoder|decoder)\.layers\.(\d+)\.fc([12])' + _W,
     r'transformer.\1.layers.\2.linear\3.\g<param>'),
    (r'model\.encoder\.memory_fusion\.([023])' + _W,
     r'transformer.encoder.memory_fusion.\1.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.encoder_attn\.' + _MSDA + _W,
     r'transformer.decoder.layers.\1.cross_attn.\2.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm1.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.self_attn_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm2.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.final_layer_norm' + _W,
     r'transformer.decoder.layers.\1.norm3.\g<param>'),
    (r'model\.decoder\.layers\.(\d+)\.self_attn\.out_proj' + _W,
     r'transformer.decoder.layers.\1.self_attn.out_proj.\g<param>'),
    (r'model\.decoder\.(class_head\.\d+|bbox_head\.\d+\.layers\.\d+|'
     r'ref_point_head\.layers\.\d+|query_scale\.layers\.\d+|norm|'
     r'position_relation_embedding\.pos_proj\.0)' + _W,
     r'transformer.decoder.\1.\g<param>'),
    (r'model\.(encoder_class_head|hybrid_class_head)' + _W,
     r'transformer.\1.\g<param>'),
    (r'model\.(encoder_bbox_head|hybrid_bbox_head)\.layers\.(\d+)' + _W,
     r'transformer.\1.layers.\2.\g<param>'),
    (r'model\.(?:encoder_output|enc_output)' + _W,
     r'transformer.enc_output.\g<param>'),
    (r'model\.(?:encoder_output_norm|enc_output_norm)' + _W,
     r'transformer.enc_output_norm.\g<param>'),
    (r'model\.target_embed\.weight', 'transformer.tgt_embed.weight'),
    (r'model\.hybrid_target_embed\.weight',
     'transformer.hybrid_tgt_embed.weight'),
    (r'model\.level_embed', 'transformer.level_embeds'),
    (r'model\.neck\.convs\.(\d+)\.([01])' + _W,
     r'neck.convs.\1.\2.\g<param>'),
    (r'denoising_generator\.label_encoder\.weight',
     'denoising_generator.label_encoder.weight'),
    # timm ResNet (the port's default ``use_timm_backbone=True``): the names
    # of the official ResNet, which are mmdet's ``ResNet`` names
    (r'model\.backbone\.model\._backbone\.(conv1|bn1|layer\d+\.\d+\.'
     r'(?:conv\d|bn\d|downsample\.[01]))\.'
     r'(weight|bias|running_mean|running_var|num_batches_tracked)',
     r'backbone.\1.\2'),
)
# transformers' own ``ResNetBackbone`` (``use_timm_backbone=False``):
# (pattern, function of the match giving the official/mmdet ResNet key)
_BN = r'\.(weight|bias|running_mean|running_var|num_batches_tracked)'
_HF_RESNET_TO_OFFICIAL = (
    (r'model\.backbone\.model\.embedder\.embedder\.convolution\.weight',
     lambda m: 'backbone.conv1.weight'),
    (r'model\.backbone\.model\.embedder\.embedder\.normalization' + _BN,
     lambda m: f'backbone.bn1.{m[1]}'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.'
     r'(\d+)\.convolution\.weight',
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}'
     '.weight'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.'
     r'(\d+)\.normalization' + _BN,
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.'
     f'{m[4]}'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.'
     r'shortcut\.convolution\.weight',
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight'),
    (r'model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.'
     r'shortcut\.normalization' + _BN,
     lambda m: f'backbone.layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}'),
)
# the port splits ``nn.MultiheadAttention.in_proj_*`` into q/k/v projections
_HF_QKV = r'model\.decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj' + _W


def detect_relation_detr_layout(state_dict: Dict[str, Tensor]) -> str:
    """``'official'`` (xiuqhou/Relation-DETR, keys ``transformer.*``) or
    ``'hf'`` (HF transformers, keys ``model.encoder.*``/``model.decoder.*``)
    from the characteristic keys of a Relation-DETR state dict."""
    official = any(k.startswith('transformer.') for k in state_dict)
    hf = any(
        k.startswith(('model.encoder.', 'model.decoder.')) for k in state_dict)
    if official == hf:
        found = 'both' if official else 'neither'
        raise ValueError(
            f'cannot tell the checkpoint layout: {found} of official '
            "('transformer.*') and HF transformers ('model.encoder.*', "
            "'model.decoder.*') keys found, e.g. "
            f'{sorted(state_dict)[:5]}')
    return 'official' if official else 'hf'


def convert_relation_detr_hf(
        state_dict: Dict[str, Tensor],
        class_index: Optional[Tensor] = None) -> 'OrderedDict[str, Tensor]':
    """Map an HF transformers ``RelationDetrForObjectDetection`` state dict
    onto :class:`RelationDETR`.

    The HF keys are renamed to the official layout (decoder self-attention
    ``q/k/v_proj`` concatenated back into ``in_proj_*``) and then converted by
    :func:`convert_relation_detr_official`. A ResNet backbone is mapped to
    mmdet's ``ResNet`` names, from timm (``model.backbone.model._backbone``)
    or from transformers' ``ResNetBackbone`` (``embedder``/``encoder.stages``;
    its ``downsample_in_bottleneck`` stride placement is a config matter, not
    a key one). Any other key, e.g. of a Swin or FocalNet backbone, raises.

    Args:
        state_dict: HF ``model.state_dict()``, e.g. from ``model.safetensors``
            or ``pytorch_model.bin``.
        class_index: as in :func:`convert_relation_detr_official` (the HF
            COCO checkpoints keep the official 91-way heads).

    Returns:
        OrderedDict loadable with ``strict=True``.
    """
    official = OrderedDict()
    qkv: Dict[Tuple[str, str], Dict[str, Tensor]] = {}
    unmapped = []
    for key, value in state_dict.items():
        if m := re.fullmatch(_HF_QKV, key):
            qkv.setdefault((m[1], m['param']), {})[m[2]] = value
            continue
        new = None
        for pattern, template in _HF_TO_OFFICIAL:
            if m := re.fullmatch(pattern, key):
                new = m.expand(template)
                break
        else:
            for pattern, rename in _HF_RESNET_TO_OFFICIAL:
                if m := re.fullmatch(pattern, key):
                    new = rename(m)
                    break
        if new is None:
            unmapped.append(key)
        else:
            official[new] = value
    if unmapped:
        raise KeyError(
            f'{len(unmapped)} key(s) of the HF checkpoint have no vitdense '
            f'counterpart (only ResNet backbones are mapped): {unmapped}')
    for (layer, param), parts in sorted(qkv.items()):
        missing = [p for p in 'qkv' if p not in parts]
        if missing:
            raise KeyError(f'decoder layer {layer} self-attention lacks '
                           f'{[f"{p}_proj.{param}" for p in missing]}')
        official[f'transformer.decoder.layers.{layer}.self_attn.'
                 f'in_proj_{param}'] = torch.cat([parts[p] for p in 'qkv'])
    return convert_relation_detr_official(official, class_index)
