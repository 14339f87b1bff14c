"""Building blocks of Uni-Perceiver v2.

"Uni-Perceiver v2: A Generalist Model for Large-Scale Vision and
Vision-Language Tasks" (Li et al., CVPR 2023, arXiv:2211.09808). Its code was
never released; the conditional MoE, the unified BERT encoder and the
similarity predictor follow Uni-Perceiver-MoE (Zhu et al., NeurIPS 2022,
arXiv:2206.04674), https://github.com/fundamentalvision/Uni-Perceiver
(a8c9e37): ``uniperceiver/task_moe/{gate,experts,layer}.py``,
``uniperceiver/modeling/encoder/unified_bert_encoder.py``,
``uniperceiver/modeling/layers/transformer_encoder_moe_layer.py``,
``uniperceiver/modeling/predictor/embed_cls_predictor.py``.

Different from the official code: token attributes are integer ids with a
learned embedding (the official feeds fixed 8-bit attribute vectors through
``Linear(8, C)``, i.e. the same table for one-hot vectors); experts are
computed once per attribute group instead of per modality slice, so any
number of attributes may share one sequence.
"""
import os.path as osp
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmdet.models.layers import SinePositionalEncoding
from mmdet.models.layers.transformer.utils import coordinate_to_encoding
from mmdet.models.losses.utils import weight_reduce_loss
from mmengine.model import BaseModule
from torch import Tensor, nn

from vitdense.registry import MODELS

__all__ = [
    'ConditionalMoEFFN', 'UnifiedDecoderLayer', 'UnifiedDecoder',
    'AttentionPoolingHeads', 'RegionTokenEmbed', 'RobertaTextEncoder',
    'roberta_state_dict',
    'unified_logits', 'unified_loss', 'UnifiedSimilarityLoss'
]

# the official clamps the learned temperature exp(logit_scale) at 100
MAX_LOGIT_SCALE = 100.0


@MODELS.register_module()
class ConditionalMoEFFN(BaseModule):
    """Attribute-level conditional MoE feed-forward network.

    Uni-Perceiver-MoE's attribute-level routing, official
    ``TopKGate`` with ``TAG_Transform`` and ``FFN_SHARE_GATE_DECISION``:
    the gate sees only the token's attribute embedding,
    ``logits = W_g LayerNorm(E[attr])`` (no bias), so every token of an
    attribute takes the same ``top_k`` experts. As the official:

    - gate weights are the softmax over all experts, taken at the top-k
      experts and renormalised to sum to 1 when ``top_k > 1`` (for
      ``top_k == 1`` the weight is the softmax probability, not 1);
    - in training only, Gaussian noise of std ``gate_noise_std /
      num_experts`` is added to the logits before top-k and softmax
      (``NOISY_GATE_POLICY='vmoe'``), one draw per attribute and forward;
    - each expert is an FFN ``Linear-GELU-Dropout-Linear``; the selected
      experts are mixed in weight space, ``W = sum_k g_k W_{e_k}`` for both
      linears (``FusedExperts.mergelayer``), so one attribute group costs one
      FFN whatever ``top_k``;
    - no load-balancing loss: the official attribute gate leaves it out
      (routing is data-independent, so there is no token imbalance to fix).

    Args:
        embed_dims (int): token width C.
        feedforward_channels (int): hidden width of each expert.
        num_experts (int): experts per layer.
        num_attributes (int): number of token attribute ids.
        top_k (int): experts per attribute (1 or 2 as the official; any
            ``<= num_experts`` works).
        ffn_drop (float): dropout after the activation.
        gate_noise_std (float): training noise std is this over
            ``num_experts``; 0 disables it.
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 num_experts: int,
                 num_attributes: int,
                 top_k: int = 1,
                 ffn_drop: float = 0.0,
                 gate_noise_std: float = 1.0,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 1 <= top_k <= num_experts:
            raise ValueError(f'top_k must be in [1, num_experts={num_experts}]'
                             f', got {top_k}')
        self.embed_dims = embed_dims
        self.num_experts = num_experts
        self.num_attributes = num_attributes
        self.top_k = top_k
        self.gate_noise_std = gate_noise_std
        self.attribute_embed = nn.Embedding(num_attributes, embed_dims)
        self.attribute_norm = nn.LayerNorm(embed_dims)
        self.gate = nn.Linear(embed_dims, num_experts, bias=False)
        # experts stacked: (E, F, C), (E, F), (E, C, F), (E, C)
        self.fc1_weight = nn.Parameter(
            torch.empty(num_experts, feedforward_channels, embed_dims))
        self.fc1_bias = nn.Parameter(
            torch.zeros(num_experts, feedforward_channels))
        self.fc2_weight = nn.Parameter(
            torch.empty(num_experts, embed_dims, feedforward_channels))
        self.fc2_bias = nn.Parameter(torch.zeros(num_experts, embed_dims))
        self.activate = nn.GELU()
        self.drop = nn.Dropout(ffn_drop)
        # BERT/timm init of the official (every expert drawn independently)
        for weight in (self.fc1_weight, self.fc2_weight, self.gate.weight,
                       self.attribute_embed.weight):
            nn.init.trunc_normal_(weight, std=0.02)

    def _route_table(self) -> Tuple[Tensor, Tensor]:
        """Experts (A, k) and their weights (A, k) for every attribute."""
        embed = self.attribute_norm(self.attribute_embed.weight)
        logits = self.gate(embed.float())  # (A, E), fp32 as the official
        if self.training and self.gate_noise_std > 0:
            logits = logits + torch.randn_like(logits) * (
                self.gate_noise_std / self.num_experts)
        probs = logits.softmax(dim=-1)
        indices = logits.topk(self.top_k, dim=-1).indices
        weights = probs.gather(-1, indices)
        if self.top_k > 1:
            weights = weights / weights.sum(-1, keepdim=True).clamp(
                min=torch.finfo(weights.dtype).eps)
        return indices, weights

    def _check_attributes(self, attributes: Tensor) -> None:
        if attributes.dtype not in (torch.int64, torch.int32):
            raise TypeError('attributes must be an integer tensor, got '
                            f'{attributes.dtype}')
        if attributes.numel() and (attributes.min() < 0 or
                                   attributes.max() >= self.num_attributes):
            raise ValueError(
                f'attribute ids must be in [0, {self.num_attributes}), got '
                f'[{int(attributes.min())}, {int(attributes.max())}]')

    def route(self, attributes: Tensor) -> Tuple[Tensor, Tensor]:
        """Expert indices and gate weights, both ``attributes.shape + (k,)``.

        In training mode the gate noise makes this a random draw.
        """
        self._check_attributes(attributes)
        indices, weights = self._route_table()
        return indices[attributes], weights[attributes]

    def forward(self, x: Tensor, attributes: Tensor) -> Tensor:
        """x (B, N, C), attributes (B, N) -> (B, N, C)."""
        if attributes.shape != x.shape[:-1]:
            raise ValueError(f'attributes {tuple(attributes.shape)} must have '
                             f'the shape of x without C {tuple(x.shape)}')
        self._check_attributes(attributes)
        indices, weights = self._route_table()
        flat_x = x.reshape(-1, x.size(-1))
        flat_attr = attributes.reshape(-1)
        out = flat_x.new_zeros(flat_x.shape)
        for attr in flat_attr.unique().tolist():
            sel = (flat_attr == attr).nonzero().squeeze(1)
            experts, gates = indices[attr], weights[attr].to(x.dtype)
            w1 = torch.einsum('k,kfc->fc', gates, self.fc1_weight[experts])
            b1 = gates @ self.fc1_bias[experts]
            w2 = torch.einsum('k,kcf->cf', gates, self.fc2_weight[experts])
            b2 = gates @ self.fc2_bias[experts]
            hidden = self.drop(self.activate(F.linear(flat_x[sel], w1, b1)))
            out = out.index_copy(0, sel, F.linear(hidden, w2, b2))
        return out.view_as(x)


@MODELS.register_module()
class UnifiedDecoderLayer(BaseModule):
    """Pre-LN BERT layer with an attribute-routed MoE FFN.

    As the official ``MoETransformerEncoderLayer`` built by
    ``UnifiedBertEncoder`` (``norm_first=True``):
    ``x = x + DropPath(Drop(SelfAttn(LN(x))))``,
    ``x = x + DropPath(Drop(MoEFFN(LN(x), attributes)))``; ``drop`` is also
    the attention-probability dropout and the FFN's inner dropout
    (``HIDDEN_DROPOUT_PROB``). torch's ``nn.MultiheadAttention``.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 num_experts: int,
                 num_attributes: int,
                 top_k: int = 1,
                 drop: float = 0.0,
                 drop_path: float = 0.0,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=drop, batch_first=True)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.ffn = ConditionalMoEFFN(embed_dims, feedforward_channels,
                                     num_experts, num_attributes, top_k,
                                     ffn_drop=drop)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else \
            nn.Identity()

    def forward(self,
                x: Tensor,
                attributes: Tensor,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, N, C), attributes (B, N), key_padding_mask (B, N) bool with
        True on padding (or None) -> (B, N, C)."""
        y = self.norm1(x)
        y = self.attn(y, y, y, key_padding_mask=key_padding_mask,
                      need_weights=False)[0]
        x = x + self.drop_path(self.drop(y))
        y = self.ffn(self.norm2(x), attributes)
        return x + self.drop_path(self.drop(y))


@MODELS.register_module()
class UnifiedDecoder(BaseModule):
    """The task-agnostic unified decoder g (paper, method: "unified decoder").

    A randomly initialised BERT-style pre-LN Transformer shared by all tasks
    and modalities, with attribute-level conditional MoE in every FFN; every
    layer drops paths at ``drop_path`` (Uni-Perceiver-MoE's configs,
    ``DROP_PATH_PROB_FIXED: True``, 0.1). With ``output_proj`` it ends with
    the official predictor's ``ln_post`` + ``proj`` (``OUTPUT_PROJ: True``),
    applied to inputs and targets alike before the cosine similarity.
    """

    def __init__(self,
                 num_layers: int = 6,
                 embed_dims: int = 768,
                 num_heads: int = 12,
                 feedforward_channels: int = 3072,
                 num_experts: int = 8,
                 num_attributes: int = 4,
                 top_k: int = 1,
                 drop: float = 0.0,
                 drop_path: float = 0.0,
                 output_proj: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.layers = nn.ModuleList(
            UnifiedDecoderLayer(embed_dims, num_heads, feedforward_channels,
                                num_experts, num_attributes, top_k, drop,
                                drop_path) for _ in range(num_layers))
        self.output_proj = nn.Sequential(
            nn.LayerNorm(embed_dims),
            nn.Linear(embed_dims, embed_dims)) if output_proj else \
            nn.Identity()

    def forward(self,
                x: Tensor,
                attributes: Tensor,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """x (B, N, C), attributes (B, N), key_padding_mask (B, N) bool with
        True on padding (or None) -> (B, N, C)."""
        for layer in self.layers:
            x = layer(x, attributes, key_padding_mask)
        return self.output_proj(x)


@MODELS.register_module()
class AttentionPoolingHeads(BaseModule):
    """M' CLIP-style attention-pooling heads over the last feature map.

    The paper's global image representation is
    ``Concat(AttnPool_1..M'(F_L), Flatten(F_L))`` (paper, method: image
    encoder); this module
    gives the first part: M' learnable queries attend (multi-head) to the
    flattened map projected to ``embed_dims`` plus a normalised 2-D sine
    positional encoding (mmdet's ``SinePositionalEncoding``; CLIP's learned
    positional table would fix the input size), so any H, W works.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 num_heads: int,
                 num_queries: int,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % 2:
            raise ValueError(f'embed_dims must be even, got {embed_dims}')
        self.input_proj = nn.Linear(in_channels, embed_dims)
        self.positional_encoding = SinePositionalEncoding(
            num_feats=embed_dims // 2, normalize=True)
        self.queries = nn.Parameter(torch.empty(num_queries, embed_dims))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C_in, H, W) -> (B, num_queries, embed_dims)."""
        B, _, H, W = x.shape
        mask = x.new_zeros((B, H, W), dtype=torch.bool)
        pos = self.positional_encoding(mask).flatten(2).transpose(1, 2)
        tokens = self.input_proj(x.flatten(2).transpose(1, 2)) + pos
        queries = self.queries.unsqueeze(0).expand(B, -1, -1)
        return self.attn(queries, tokens, tokens, need_weights=False)[0]


@MODELS.register_module()
class RegionTokenEmbed(BaseModule):
    """Regional tokens ``q_sem + B(q_box) + M(q_mask)`` (paper, method:
    image encoder, regional representation).

    B: sine positional encoding of the normalised ``(cx, cy, w, h)``
    (mmdet's ``coordinate_to_encoding``, ``embed_dims // 2`` features per
    coordinate, as DINO's query positions) + Linear. M: the mask
    probabilities ``sigmoid(mask_logits)`` (bounded, unlike logits, whose
    background values are arbitrarily negative) adaptive-average-pooled to
    ``mask_pool_size``² and flattened + Linear. Gradients flow into boxes
    and masks; detach them before the call to stop that.
    """

    def __init__(self,
                 embed_dims: int,
                 mask_pool_size: int = 28,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % 2:
            raise ValueError(f'embed_dims must be even, got {embed_dims}')
        self.embed_dims = embed_dims
        self.mask_pool_size = mask_pool_size
        self.box_proj = nn.Linear(2 * embed_dims, embed_dims)
        self.mask_proj = nn.Linear(mask_pool_size**2, embed_dims)

    def forward(self,
                q_sem: Tensor,
                boxes: Tensor,
                mask_logits: Optional[Tensor] = None) -> Tensor:
        """q_sem (B, O, C), boxes (B, O, 4) normalised cxcywh, mask_logits
        (B, O, h, w) or None (M skipped) -> (B, O, C)."""
        box_pos = coordinate_to_encoding(boxes, num_feats=self.embed_dims // 2)
        out = q_sem + self.box_proj(box_pos.to(q_sem.dtype))
        if mask_logits is not None:
            B, O = mask_logits.shape[:2]
            masks = F.adaptive_avg_pool2d(
                mask_logits.flatten(0, 1).sigmoid(), self.mask_pool_size)
            out = out + self.mask_proj(masks.view(B, O, -1))
        return out


def roberta_state_dict(path: str) -> dict:
    """The ``RobertaModel`` weights of an HF RoBERTa folder or file, keys
    without the ``roberta.`` prefix, ``lm_head.*``/``pooler.*`` dropped.

    Read with safetensors or vitdense's ``weights_only`` loader: a
    downloaded ``pytorch_model.bin`` never runs pickled code."""
    from safetensors.torch import load_file

    from vitdense.utils import load_checkpoint_safely
    if osp.isdir(path):
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if osp.isfile(osp.join(path, name)):
                path = osp.join(path, name)
                break
        else:
            raise FileNotFoundError(
                f'RobertaTextEncoder: {path} holds neither model.safetensors '
                'nor pytorch_model.bin')
    state = load_file(path) if path.endswith('.safetensors') else \
        load_checkpoint_safely(path, map_location='cpu')
    out = {}
    for key, value in state.items():
        if key.startswith(('lm_head.', 'pooler.', 'roberta.pooler.')):
            continue
        out[key[len('roberta.'):] if key.startswith('roberta.') else key] = \
            value
    # buffers that older HF checkpoints stored
    out.pop('embeddings.position_ids', None)
    out.pop('embeddings.token_type_ids', None)
    return out


@MODELS.register_module()
class RobertaTextEncoder(BaseModule):
    """RoBERTa text encoder f_text (paper Sec. 3.2: BPE tokenizer +
    pre-trained RoBERTa-base): HF ``transformers``' ``RobertaModel`` and
    byte-level BPE ``RobertaTokenizerFast``.

    The model is built from its configuration, so a config builds (also on
    the meta device) without the weights or the vocabulary at hand; the
    pre-trained weights are loaded by ``init_weights`` and the tokenizer at
    the first text.

    Args:
        model (dict): ``transformers.RobertaConfig`` kwargs, e.g.
            ``dict(vocab_size=50265, max_position_embeddings=514,
            type_vocab_size=1, layer_norm_eps=1e-5)`` for roberta-base.
        tokenizer (str): folder with ``vocab.json`` and ``merges.txt`` (an
            HF roberta-base folder has them).
        pretrained (str, optional): an HF RoBERTa folder or weights file
            (``model.safetensors`` or ``pytorch_model.bin``, read with
            ``weights_only=True``); ``RobertaModel`` and
            ``RobertaForMaskedLM`` key layouts (``roberta.`` prefix,
            ``lm_head.*`` and ``pooler.*`` dropped).
        max_length (int): tokens per text, <s> and </s> included.
    """

    cache_size = 16  # distinct text lists whose tokenization is kept

    def __init__(self,
                 model: dict,
                 tokenizer: str,
                 pretrained: Optional[str] = None,
                 max_length: int = 16,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        from transformers import RobertaConfig, RobertaModel
        if not isinstance(model, dict):
            raise TypeError(
                'RobertaTextEncoder: `model` is a dict of RobertaConfig '
                f'arguments, got {model!r}; give a pre-trained folder as '
                '`pretrained`')
        self.model = RobertaModel(
            RobertaConfig(**model), add_pooling_layer=False)
        config = self.model.config
        # RoBERTa's positions start after pad_token_id
        if max_length + config.pad_token_id + 1 > \
                config.max_position_embeddings:
            raise ValueError(
                f'RobertaTextEncoder: max_length={max_length} needs '
                f'max_position_embeddings >= '
                f'{max_length + config.pad_token_id + 1}, the model has '
                f'{config.max_position_embeddings}.')
        self.tokenizer_dir = tokenizer
        self.pretrained = pretrained
        self.max_length = max_length
        self._tokenizer = None
        self._cache: 'OrderedDict[tuple, Tuple[Tensor, Tensor]]' = \
            OrderedDict()

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is not None:
            self.model.load_state_dict(
                roberta_state_dict(self.pretrained), strict=True)

    @property
    def tokenizer(self):
        """``RobertaTokenizerFast`` of ``tokenizer``, loaded at first use
        and checked against the model's vocabulary and padding id."""
        if self._tokenizer is not None:
            return self._tokenizer
        from transformers import RobertaTokenizerFast
        for name in ('vocab.json', 'merges.txt'):
            path = osp.join(self.tokenizer_dir, name)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'RobertaTextEncoder: tokenizer file {path} is missing '
                    '(a BPE tokenizer folder needs vocab.json and '
                    'merges.txt).')
        # transformers 5's constructor ignores vocab_file/merges_file
        tokenizer = RobertaTokenizerFast.from_pretrained(
            self.tokenizer_dir, local_files_only=True)
        config = self.model.config
        if len(tokenizer) > config.vocab_size:
            raise ValueError(
                f'RobertaTextEncoder: tokenizer {self.tokenizer_dir} has '
                f'{len(tokenizer)} tokens, the model only '
                f'vocab_size={config.vocab_size}.')
        if tokenizer.pad_token_id != config.pad_token_id:
            raise ValueError(
                f'RobertaTextEncoder: tokenizer pad id '
                f'{tokenizer.pad_token_id} != model pad_token_id '
                f'{config.pad_token_id}.')
        self._tokenizer = tokenizer
        return tokenizer

    @property
    def out_channels(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Token ids (N, L) and attention mask (N, L) (1 = token), cached
        per distinct list of texts (class names repeat every iteration)."""
        key = tuple(texts)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True,
            max_length=self.max_length, return_tensors='pt')
        value = (encoded['input_ids'], encoded['attention_mask'])
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def forward(self, texts: List[str]) -> Tuple[Tensor, Tensor]:
        """texts -> tokens (N, L, C_text), key_padding_mask (N, L) bool with
        True on padding."""
        device = next(self.model.parameters()).device
        input_ids, attention_mask = self.tokenize(texts)
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        tokens = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask).last_hidden_state
        return tokens, attention_mask == 0


def unified_logits(x: Tensor, y: Tensor, logit_scale: Tensor) -> Tensor:
    """``exp(logit_scale) * cos(x_i, y_j)``: x (..., C), y (K, C) ->
    (..., K).

    The paper's unified maximum likelihood,
    ``P(x, y) ∝ exp(cos(g∘f(x), g∘f(y)) / τ)``, with the learned
    ``logit_scale = log(1 / τ)``; as the official predictor the scale is
    capped at 100 (no gradient above it).
    """
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    return scale * F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()


def unified_loss(x: Tensor,
                 y: Tensor,
                 labels: Tensor,
                 logit_scale: Tensor,
                 weight: Optional[Tensor] = None,
                 avg_factor: Optional[float] = None,
                 reduction: str = 'mean') -> Tensor:
    """Cross-entropy of :func:`unified_logits` over the candidate set y
    (the paper's per-task loss, ``-log softmax_j(cos(x, y_j) / τ)[label]``).

    x (..., C), y (K, C), labels (...) in [0, K), weight (...) or None.
    """
    logits = unified_logits(x, y, logit_scale)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
        reduction='none')
    if weight is not None:
        weight = weight.reshape(-1).float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class UnifiedSimilarityLoss(nn.Module):
    """:func:`unified_loss` times ``loss_weight`` (the task weight w_k).

    The temperature is the model's (``logit_scale`` argument), as the
    official keeps it in the predictor.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                x: Tensor,
                y: Tensor,
                labels: Tensor,
                logit_scale: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        return self.loss_weight * unified_loss(
            x, y, labels, logit_scale, weight, avg_factor, self.reduction)
