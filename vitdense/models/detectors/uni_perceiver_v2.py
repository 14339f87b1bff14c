"""Uni-Perceiver v2: one generalist for detection, instance segmentation and
classification.

"Uni-Perceiver v2: A Generalist Model for Large-Scale Vision and
Vision-Language Tasks" (Li et al., CVPR 2023, arXiv:2211.09808). The official
code was never released (fundamentalvision/Uni-Perceiver holds only v1 and
Uni-Perceiver-MoE, whose MoE layer and cosine-similarity predictor the blocks
in :mod:`vitdense.models.layers.uni_perceiver_layers` follow); this is built
from the paper (Sec. 3, appendix). What the paper leaves open and what was
chosen is listed in ``configs/uni_perceiver_v2/README.md``.

Image encoder (Sec. 3.2): a backbone and a region proposal network "similar
to Mask DINO" whose classifiers are binary foreground/background: mmdet's
DINO (vitdense's :class:`AnyWidthDINO`) with ``num_classes=1`` plus a mask
branch (mask = MLP(query) . per-pixel embedding, Mask DINO Eq. 1), giving O
proposals (q_sem, q_box, q_mask). Global tokens: M' attention-pooling heads
on the map F_L, concatenated with Flatten(F_L). Texts (class names) go
through a RoBERTa encoder. The shared unified decoder g (BERT-style, with
conditional MoE FFNs routed by token attribute) maps a <SPE> token followed
by either sequence into one space; every task picks its target by
P(x, y) ~ exp(cos(g(f(x)), g(f(y))) / tau) (Eq. 4) over the task's candidate
set: class-name embeddings (the <SPE> output of each name) for the regions
(detection / instance segmentation) and for the image's <SPE> output over
its global and regional tokens (classification).

A batch holds one task (``sample.metainfo['task']``, 'detection' when
absent); :class:`~vitdense.engine.UnmixedTrainLoop` draws it per iteration
(unmixed sampling, Sec. 3.4), and in its mixed mode (the ablation)
``train_step`` receives one batch per task and sums their losses.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.models.layers.transformer.utils import MLP
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch import Tensor, nn

from vitdense.models.detectors.dino import AnyWidthDINO
from vitdense.models.layers.uni_perceiver_layers import (AttentionPoolingHeads,
                                                         RegionTokenEmbed,
                                                         RobertaTextEncoder,
                                                         UnifiedDecoder,
                                                         unified_logits,
                                                         unified_loss)
from vitdense.models.losses.vidt_plus_loss import gt_masks_from_samples
from vitdense.registry import MODELS

__all__ = ['UniPerceiverV2', 'TOKEN_ATTRIBUTES']

#: token attributes that route the decoder's conditional MoE (Sec. 3.3)
TOKEN_ATTRIBUTES = ('spe', 'image_global', 'image_region', 'text')
TASKS = ('detection', 'classification')


def _read_class_names(names: Union[str, dict, Sequence[str]], task: str
                      ) -> Tuple[str, ...]:
    """A list of names, a text file with one name per line (mmpretrain's
    ``classes`` file) or ``dict(dataset=TYPE)``: that registered dataset's
    ``METAINFO['classes']`` (e.g. mmdet's 'CocoDataset')."""
    if isinstance(names, dict):
        from mmdet.registry import DATASETS
        dataset = DATASETS.get(names['dataset'])
        if dataset is None:
            raise KeyError(f"task_classes[{task!r}]: no dataset type "
                           f"{names['dataset']!r} is registered")
        names = dataset.METAINFO['classes']
    elif isinstance(names, str):
        try:
            with open(names) as f:
                names = [line.strip() for line in f if line.strip()]
        except OSError as error:
            raise FileNotFoundError(
                f'task_classes[{task!r}]: cannot read the class-name file '
                f'{names}: {error}') from error
    names = tuple(names)
    if not names:
        raise ValueError(f'task_classes[{task!r}] is empty')
    return names


@MODELS.register_module()
class UniPerceiverV2(AnyWidthDINO):
    """Uni-Perceiver v2 generalist (detection, instance segmentation and
    classification in one model).

    Args:
        task_classes (dict): task name -> class names (a list, a text file
            with one name per line, or ``dict(dataset=TYPE)`` for a
            registered dataset's classes); the task's candidate targets.
        text_encoder (dict): :class:`RobertaTextEncoder` arguments.
        unified_decoder (dict): :class:`UnifiedDecoder` arguments (its
            ``embed_dims`` is the shared space's width).
        global_tokens (dict): ``num_queries`` (M'), ``num_heads`` of the
            attention pooling and ``level``: the neck output used as F_L.
        classification_tokens (sequence): the image tokens of
            classification, ``'global'`` and/or ``'regional'``; the paper's
            image representation is both (Sec. 3.2), its ablation compares
            them. Defaults to both.
        with_mask (bool): mask branch and instance-mask predictions.
        mask_cfg (dict): ``num_points``, ``oversample_ratio``,
            ``importance_sample_ratio`` (point-sampled mask losses, as
            Mask2Former/Mask DINO), ``mask_pool_size`` of M(q_mask),
            ``loss_mask`` and ``loss_dice``.
        temperature (float): initial tau; learnable (log 1/tau is the
            parameter). Defaults to 0.07 (CLIP).
        text_template (str): ``str.format`` template for a class name.
        loss_weights (dict): weights of ``region_cls`` and ``global_cls``.
        *args, **kwargs: :class:`AnyWidthDINO` (``bbox_head.num_classes``
            must be 1: the proposal network is class-agnostic).
    """

    def __init__(self,
                 *args,
                 task_classes: Dict[str, Union[str, Sequence[str]]],
                 text_encoder: dict,
                 unified_decoder: dict,
                 global_tokens: dict = dict(
                     num_queries=4, num_heads=8, level=-2),
                 classification_tokens: Sequence[str] = ('global', 'regional'),
                 with_mask: bool = True,
                 mask_cfg: Optional[dict] = None,
                 temperature: float = 0.07,
                 text_template: str = '{}',
                 loss_weights: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.bbox_head.num_classes != 1:
            raise ValueError(
                'UniPerceiverV2: the region proposal network is binary '
                '(foreground/background, paper Sec. 3.2), so '
                f'bbox_head.num_classes must be 1, got '
                f'{self.bbox_head.num_classes}; the classes are '
                'task_classes')
        unknown = set(task_classes) - set(TASKS)
        if unknown:
            raise ValueError(f'UniPerceiverV2: unknown task(s) '
                             f'{sorted(unknown)} in task_classes; part 1 '
                             f'has {TASKS}')
        # read lazily: a class-name file may live with data not present
        # when the model is built (e.g. to inspect a config)
        self.task_classes = dict(task_classes)
        self._class_names: Dict[str, Tuple[str, ...]] = {}
        self.text_template = text_template
        if not set(classification_tokens) <= {'global', 'regional'} or \
                'global' not in classification_tokens:
            raise ValueError(
                "UniPerceiverV2: classification_tokens is ('global',) or "
                f"('global', 'regional'), got {classification_tokens!r}")
        self.classification_tokens = tuple(classification_tokens)
        dims = unified_decoder['embed_dims']
        self.text_encoder = RobertaTextEncoder(**text_encoder)
        self.text_proj = nn.Linear(self.text_encoder.out_channels, dims)
        self.unified_decoder = UnifiedDecoder(
            num_attributes=len(TOKEN_ATTRIBUTES), **unified_decoder)
        self.spe_token = nn.Parameter(torch.zeros(dims))
        self.attribute_embed = nn.Embedding(len(TOKEN_ATTRIBUTES), dims)
        global_tokens = dict(global_tokens)
        self.global_level = global_tokens.pop('level')
        self.global_pool = AttentionPoolingHeads(
            in_channels=self.embed_dims, embed_dims=dims, **global_tokens)
        self.global_proj = nn.Linear(self.embed_dims, dims)
        mask_cfg = {
            **dict(num_points=12544, oversample_ratio=3.0,
                   importance_sample_ratio=0.75, mask_pool_size=28,
                   loss_mask=dict(type='mmdet.CrossEntropyLoss',
                                  use_sigmoid=True, loss_weight=5.0),
                   loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True,
                                  activate=True, naive_dice=True, eps=1.0,
                                  loss_weight=5.0)),
            **(mask_cfg or {})
        }
        self.with_mask_branch = with_mask
        if with_mask:
            self.mask_embed = MLP(self.embed_dims, self.embed_dims,
                                  self.embed_dims, 3)
            self.pixel_embed = nn.Conv2d(
                self.embed_dims, self.embed_dims, 3, padding=1)
            self.num_points = mask_cfg['num_points']
            self.oversample_ratio = mask_cfg['oversample_ratio']
            self.importance_sample_ratio = mask_cfg['importance_sample_ratio']
            self.loss_mask = MODELS.build(mask_cfg['loss_mask'])
            self.loss_dice = MODELS.build(mask_cfg['loss_dice'])
        self.region_embed = RegionTokenEmbed(
            self.embed_dims, mask_pool_size=mask_cfg['mask_pool_size'])
        self.region_proj = nn.Linear(self.embed_dims, dims)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / temperature)))
        self.loss_weights = {
            **dict(region_cls=2.0, global_cls=1.0), **(loss_weights or {})
        }
        self._class_cache: Dict[str, Tensor] = {}

    def init_weights(self) -> None:
        super().init_weights()
        # BERT's embedding init (std 0.02): a unit-variance type embedding
        # would drown the tokens' content (all texts and images alike)
        nn.init.normal_(self.spe_token, std=0.02)
        nn.init.normal_(self.attribute_embed.weight, std=0.02)

    def train(self, mode: bool = True) -> 'UniPerceiverV2':
        # class-name embeddings are cached in eval mode only
        self._class_cache.clear()
        return super().train(mode)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def batch_task(batch_data_samples: SampleList) -> str:
        """The one task of a batch (``metainfo['task']``, default
        'detection')."""
        tasks = {s.metainfo.get('task', 'detection')
                 for s in batch_data_samples}
        if len(tasks) != 1:
            raise ValueError(
                f'UniPerceiverV2: a batch must hold one task (unmixed '
                f'sampling draws one per batch), got {sorted(tasks)}')
        task = tasks.pop()
        if task not in TASKS:
            raise ValueError(f"UniPerceiverV2: unknown task {task!r} in the "
                             f"data samples' metainfo; part 1 has {TASKS}")
        return task

    @staticmethod
    def _proposal_samples(batch_data_samples: SampleList,
                          empty_on: Optional[torch.device] = None
                          ) -> SampleList:
        """What the class-agnostic proposal network sees of a batch: each
        sample's metainfo and its boxes, all labelled 0 (foreground), or,
        with ``empty_on`` (a device), no objects at all (classification:
        nothing to match or denoise)."""
        samples = []
        for sample in batch_data_samples:
            if empty_on is None:
                gt = sample.gt_instances
                bboxes, labels = gt.bboxes, torch.zeros_like(gt.labels)
            else:
                device = empty_on
                bboxes = torch.zeros((0, 4), device=device)
                labels = torch.zeros(0, dtype=torch.long, device=device)
            samples.append(DetDataSample(
                metainfo=sample.metainfo,
                gt_instances=InstanceData(bboxes=bboxes, labels=labels)))
        return samples

    def _attributes(self, like: Tensor, name: str) -> Tensor:
        return torch.full(like.shape[:2], TOKEN_ATTRIBUTES.index(name),
                          dtype=torch.long, device=like.device)

    def _decode(self, tokens: List[Tuple[str, Tensor]],
                padding: Optional[Tensor] = None) -> Tensor:
        """g(<SPE>, tokens...): each group is (attribute, (B, N, C)); the
        attribute embeds the token type and routes the MoE FFNs."""
        first = tokens[0][1]
        spe = self.spe_token.expand(first.shape[0], 1, -1)
        tokens = [('spe', spe)] + tokens
        attributes = torch.cat(
            [self._attributes(t, name) for name, t in tokens], 1)
        x = torch.cat([t for _, t in tokens], 1) + \
            self.attribute_embed(attributes)
        if padding is not None:
            padding = torch.cat([padding.new_zeros(len(x), 1), padding], 1)
        return self.unified_decoder(x, attributes, padding)

    def class_names(self, task: str) -> Tuple[str, ...]:
        """The task's class names (``task_classes``, read at first use)."""
        if task not in self.task_classes:
            raise KeyError(f'UniPerceiverV2: no task_classes for {task!r}')
        if task not in self._class_names:
            self._class_names[task] = _read_class_names(
                self.task_classes[task], task)
        return self._class_names[task]

    def class_embeddings(self, task: str) -> Tensor:
        """(K, C): the <SPE> outputs of the task's class names through the
        text encoder and g (the candidate targets y of Eq. 4)."""
        names = self.class_names(task)
        if not self.training and task in self._class_cache:
            return self._class_cache[task]
        texts = [self.text_template.format(n) for n in names]
        words, padding = self.text_encoder(texts)
        out = self._decode([('text', self.text_proj(words))], padding)[:, 0]
        if not self.training:
            self._class_cache[task] = out
        return out

    def _global_tokens(self, img_feats: Sequence[Tensor]) -> Tensor:
        """Concat(AttnPool_1..M'(F_L), Flatten(F_L)) (Sec. 3.2)."""
        feat = img_feats[self.global_level]
        pos = self.positional_encoding(
            feat.new_zeros((feat.shape[0], ) + feat.shape[-2:]))
        flat = (feat + pos).flatten(2).transpose(1, 2)
        return torch.cat([self.global_pool(feat), self.global_proj(flat)], 1)

    def _proposals(self, img_feats, batch_data_samples):
        """Binary proposal network: per-layer objectness and boxes, the
        matching queries' semantics q_sem and mask logits, and what
        ``loss_by_feat`` needs."""
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        hidden = head_inputs['hidden_states']
        cls_scores, bbox_preds = self.bbox_head(hidden,
                                                head_inputs['references'])
        dn_meta = head_inputs.get('dn_meta')
        num_dn = dn_meta['num_denoising_queries'] if dn_meta else 0
        q_sem = hidden[-1][:, num_dn:]
        mask_logits = None
        if self.with_mask_branch:
            # Mask DINO's mask = query embedding . per-pixel embedding, on the
            # finest neck level refined by the encoder's memory level
            pixel = self.pixel_embed(img_feats[0] + head_inputs['memory_0'])
            mask_logits = torch.einsum('bqc,bchw->bqhw',
                                       self.mask_embed(q_sem), pixel)
        return dict(head_inputs=head_inputs, cls_scores=cls_scores,
                    bbox_preds=bbox_preds, num_dn=num_dn, q_sem=q_sem,
                    mask_logits=mask_logits)

    def forward_transformer(self, img_feats: Tuple[Tensor],
                            batch_data_samples: SampleList) -> Dict:
        """mmdet DINO's ``forward_transformer``; the head inputs also carry
        the encoder memory's first level as a map (``memory_0``, the mask
        branch's pixel-embedding input)."""
        encoder_inputs, decoder_inputs = self.pre_transformer(
            img_feats, batch_data_samples)
        num_tokens = sum(f.shape[-2] * f.shape[-1] for f in img_feats)
        if num_tokens < self.num_queries:
            shape = tuple(batch_data_samples[0].metainfo['batch_input_shape'])
            raise ValueError(
                f'UniPerceiverV2: a {shape} input gives {num_tokens} encoder '
                f'tokens, fewer than the {self.num_queries} proposals '
                '(num_queries) selected from them: resize the images up or '
                'lower num_queries')
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        decoder_query, head_inputs = self.pre_decoder(
            **encoder_outputs, batch_data_samples=batch_data_samples)
        decoder_inputs.update(decoder_query)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        memory = encoder_outputs['memory']
        h, w = (int(v) for v in encoder_outputs['spatial_shapes'][0])
        head_inputs['memory_0'] = memory[:, :h * w].transpose(1, 2).reshape(
            memory.shape[0], -1, h, w)
        return head_inputs

    def _image_outputs(self, img_feats, proposals: Optional[dict] = None
                       ) -> Tensor:
        """g over [<SPE>, global tokens, regional tokens]: (B, 1 + N, C).

        Regional tokens are q_sem + B(q_box) + M(q_mask) of the matching
        queries, present when ``proposals`` is given."""
        tokens = [('image_global', self._global_tokens(img_feats))]
        if proposals is not None:
            boxes = proposals['bbox_preds'][-1][:, proposals['num_dn']:]
            tokens.append(('image_region', self.region_proj(
                self.region_embed(proposals['q_sem'], boxes,
                                  proposals['mask_logits']))))
        return self._decode(tokens)

    def _region_outputs(self, img_feats, proposals: dict) -> Tensor:
        """(B, O, C): g's outputs at the regional tokens (detection and
        instance segmentation compare them with the class names)."""
        num_regions = proposals['q_sem'].shape[1]
        return self._image_outputs(img_feats, proposals)[:, -num_regions:]

    def _image_embedding(self, img_feats,
                         batch_data_samples: SampleList) -> Tensor:
        """(B, C): the image's <SPE> output over ``classification_tokens``
        (global, and regional from the proposal network)."""
        proposals = None
        if 'regional' in self.classification_tokens:
            proposals = self._proposals(
                img_feats,
                self._proposal_samples(batch_data_samples,
                                       empty_on=img_feats[0].device))
        return self._image_outputs(img_feats, proposals)[:, 0]

    # ------------------------------------------------------------- losses
    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        task = self.batch_task(batch_data_samples)
        img_feats = self.extract_feat(batch_inputs)
        if task == 'classification':
            return self._classification_loss(img_feats, batch_data_samples)
        return self._detection_loss(img_feats, batch_data_samples)

    def _classification_loss(self, img_feats, batch_data_samples):
        labels = torch.cat([s.gt_label for s in batch_data_samples]).to(
            img_feats[0].device)
        loss = unified_loss(
            self._image_embedding(img_feats, batch_data_samples),
            self.class_embeddings('classification'), labels,
            self.logit_scale)
        return dict(loss_global_cls=self.loss_weights['global_cls'] * loss)

    def _detection_loss(self, img_feats, batch_data_samples):
        binary_samples = self._proposal_samples(batch_data_samples)
        proposals = self._proposals(img_feats, binary_samples)
        head_inputs = proposals['head_inputs']
        img_metas = [s.metainfo for s in batch_data_samples]
        losses = self.bbox_head.loss_by_feat(
            proposals['cls_scores'], proposals['bbox_preds'],
            head_inputs['enc_outputs_class'],
            head_inputs['enc_outputs_coord'],
            [s.gt_instances for s in binary_samples], img_metas,
            head_inputs['dn_meta'])
        matches = self._match_last_layer(proposals, binary_samples)
        region_out = self._region_outputs(img_feats, proposals)
        num_pos = max(sum(len(q) for q, _ in matches), 1)
        # matched regions only, summed over the batch, / number of matches
        region_loss = unified_loss(
            torch.cat([region_out[i, q] for i, (q, _) in enumerate(matches)]),
            self.class_embeddings('detection'),
            torch.cat([
                sample.gt_instances.labels[g]
                for sample, (_, g) in zip(batch_data_samples, matches)
            ]),
            self.logit_scale,
            avg_factor=num_pos)
        losses['loss_region_cls'] = \
            self.loss_weights['region_cls'] * region_loss
        if self.with_mask_branch:
            losses.update(self._mask_loss(proposals['mask_logits'], matches,
                                          batch_data_samples, num_pos))
        return losses

    @torch.no_grad()
    def _match_last_layer(self, proposals, binary_samples
                          ) -> List[Tuple[Tensor, Tensor]]:
        """(query indices, ground-truth indices) per image: the bbox head's
        Hungarian assignment of the last layer's matching queries (the
        same costs as its loss)."""
        num_dn = proposals['num_dn']
        scores = proposals['cls_scores'][-1][:, num_dn:]
        boxes = proposals['bbox_preds'][-1][:, num_dn:]
        matches = []
        for i, sample in enumerate(binary_samples):
            img_h, img_w = sample.metainfo['img_shape']
            factor = boxes.new_tensor([img_w, img_h, img_w, img_h])
            pred = InstanceData(scores=scores[i],
                                bboxes=bbox_cxcywh_to_xyxy(boxes[i]) * factor)
            result = self.bbox_head.assigner.assign(
                pred_instances=pred, gt_instances=sample.gt_instances,
                img_meta=sample.metainfo)
            query = torch.nonzero(result.gt_inds > 0).squeeze(1)
            matches.append((query, result.gt_inds[query] - 1))
        return matches

    def _mask_loss(self, mask_logits: Tensor, matches, batch_data_samples,
                   num_pos: int) -> Dict[str, Tensor]:
        """Point-sampled BCE + dice on the matched queries (Mask2Former's
        ``_loss_by_feat_single``, as Mask DINO)."""
        pad_shape = batch_data_samples[0].metainfo['batch_input_shape']
        gt_masks = gt_masks_from_samples(batch_data_samples, pad_shape,
                                         'with_mask', mask_logits.device)
        preds = torch.cat([mask_logits[i, q] for i, (q, _) in
                           enumerate(matches)])
        targets = torch.cat([gt_masks[i][g] for i, (_, g) in
                             enumerate(matches)])
        if len(preds) == 0:
            zero = mask_logits.sum() * 0
            return dict(loss_mask=zero, loss_dice=zero)
        with torch.no_grad():
            points = get_uncertain_point_coords_with_randomness(
                preds.unsqueeze(1), None, self.num_points,
                self.oversample_ratio, self.importance_sample_ratio)
            point_targets = point_sample(targets.unsqueeze(1).float(),
                                         points).squeeze(1)
        point_preds = point_sample(preds.unsqueeze(1), points).squeeze(1)
        return dict(
            loss_dice=self.loss_dice(point_preds, point_targets,
                                     avg_factor=num_pos),
            loss_mask=self.loss_mask(point_preds.reshape(-1),
                                     point_targets.reshape(-1),
                                     avg_factor=num_pos * self.num_points))

    def train_step(self, data: Union[dict, List[dict]],
                   optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """mmengine's ``train_step``; a list holds one batch per task (mixed
        sampling, the paper's ablation) and their losses are summed into one
        update."""
        if not isinstance(data, list):
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            losses = {}
            for batch in data:
                batch = self.data_preprocessor(batch, True)
                for name, value in self._run_forward(batch,
                                                     mode='loss').items():
                    if name in losses:
                        raise ValueError(
                            f'UniPerceiverV2: loss {name!r} comes from two '
                            'tasks of a mixed batch')
                    losses[name] = value
        parsed_losses, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(parsed_losses)
        return log_vars

    # ---------------------------------------------------------- inference
    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        task = self.batch_task(batch_data_samples)
        img_feats = self.extract_feat(batch_inputs)
        if task == 'classification':
            logits = unified_logits(
                self._image_embedding(img_feats, batch_data_samples),
                self.class_embeddings('classification'), self.logit_scale)
            scores = logits.softmax(-1)
            for sample, score in zip(batch_data_samples, scores):
                sample.pred_score = score
                sample.pred_label = score.argmax(-1, keepdim=True)
            return batch_data_samples
        proposals = self._proposals(img_feats, batch_data_samples)
        region_out = self._region_outputs(img_feats, proposals)
        probs = unified_logits(region_out, self.class_embeddings('detection'),
                               self.logit_scale).softmax(-1)
        # score(region, class) = P(foreground) * P(class | region)
        scores = proposals['cls_scores'][-1].sigmoid() * probs
        results = [
            self._predict_single(scores[i], proposals['bbox_preds'][-1][i],
                                 None if proposals['mask_logits'] is None
                                 else proposals['mask_logits'][i],
                                 sample.metainfo, rescale)
            for i, sample in enumerate(batch_data_samples)
        ]
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _predict_single(self, scores: Tensor, boxes: Tensor,
                        mask_logits: Optional[Tensor], img_meta: dict,
                        rescale: bool) -> InstanceData:
        """Top ``test_cfg.max_per_img`` (region, class) pairs, as mmdet's
        DETR heads; masks upsampled to the padded input, cropped and
        resized as mmdet's Mask2Former."""
        num_classes = scores.shape[-1]
        max_per_img = min(self.test_cfg.get('max_per_img', 100),
                          scores.numel())
        top, index = scores.flatten().topk(max_per_img)
        query, labels = index // num_classes, index % num_classes
        img_h, img_w = img_meta['img_shape']
        bboxes = bbox_cxcywh_to_xyxy(boxes[query])
        bboxes = bboxes * bboxes.new_tensor([img_w, img_h, img_w, img_h])
        bboxes[:, 0::2].clamp_(min=0, max=img_w)
        bboxes[:, 1::2].clamp_(min=0, max=img_h)
        results = InstanceData(scores=top, labels=labels)
        if rescale:
            bboxes /= bboxes.new_tensor(
                img_meta['scale_factor']).repeat((1, 2))
        results.bboxes = bboxes
        if mask_logits is not None:
            masks = F.interpolate(mask_logits[query][None],
                                  size=img_meta['batch_input_shape'],
                                  mode='bilinear', align_corners=False)
            masks = masks[..., :img_h, :img_w]
            if rescale:
                masks = F.interpolate(masks, size=img_meta['ori_shape'][:2],
                                      mode='bilinear', align_corners=False)
            results.masks = masks[0] > 0
        return results
