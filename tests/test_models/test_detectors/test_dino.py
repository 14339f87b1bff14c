"""DINO at any width, and the demo's DINO row against its Relation-DETR row.

``configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py`` inherits
``configs/demo/dino_swin-nano_1xb8-shapes.py``; the two README rows compare
DINO with Relation-DETR, so they may differ only in what the paper adds
(position relation prior, memory fusion, hybrid branch, IoU-aware varifocal
loss).
"""
import math
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope

DINO_DEMO = 'configs/demo/dino_swin-nano_1xb8-shapes.py'
RELATION_DETR_DEMO = (
    'configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py')

#: resolved-config keys the Relation-DETR demo may change, with the reason
PAPER_COMPONENTS = {
    'type': 'RelationDETR: DINO + the components below',
    'encoder.memory_fusion': 'memory fusion',
    'decoder.relation': 'position relation prior',
    # the official RelationTransformerDecoder scales the positional query
    # by MLP(query); the official DINOTransformerDecoder does not
    'decoder.query_scale': 'position relation decoder (official)',
    'num_hybrid_queries': 'hybrid branch',
    'bbox_head.hybrid_assign': 'hybrid branch',
    'bbox_head.type': 'hybrid + varifocal losses',
    'bbox_head.loss_cls.type': 'IoU-aware varifocal loss',
    'bbox_head.loss_cls.use_sigmoid': 'IoU-aware varifocal loss',
}
#: parameters only Relation-DETR has (hybrid branch off in the demo)
PAPER_MODULES = ('encoder.memory_fusion.',
                 'decoder.position_relation_embedding.',
                 'decoder.query_scale.')


def flatten(cfg: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[prefix + key] = value
    return flat


def model_cfg(repo_root: str, path: str) -> dict:
    return Config.fromfile(osp.join(repo_root, path)).model.to_dict()


def build(cfg: dict):
    init_default_scope('mmdet')
    import vitdense.models  # noqa: F401
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_demo_configs_differ_only_in_what_the_paper_adds(repo_root):
    dino = flatten(model_cfg(repo_root, DINO_DEMO))
    relation = flatten(model_cfg(repo_root, RELATION_DETR_DEMO))
    differing = {
        key
        for key in dino.keys() | relation.keys()
        if dino.get(key, '<unset>') != relation.get(key, '<unset>')
    }
    assert differing == set(PAPER_COMPONENTS), (
        f'not named by the paper: {sorted(differing - set(PAPER_COMPONENTS))}'
        f'; no longer differing: {sorted(set(PAPER_COMPONENTS) - differing)}')
    assert dino['type'] == 'AnyWidthDINO'
    assert (relation['decoder.relation'], relation['encoder.memory_fusion'],
            relation['num_hybrid_queries']) == (True, True, 0)


def test_demo_models_differ_only_in_the_relation_detr_modules(repo_root):
    dino = build(model_cfg(repo_root, DINO_DEMO)).state_dict()
    relation = build(model_cfg(repo_root, RELATION_DETR_DEMO)).state_dict()
    assert not dino.keys() - relation.keys()
    extra = relation.keys() - dino.keys()
    assert extra and all(key.startswith(PAPER_MODULES) for key in extra), \
        sorted(extra)
    assert {
        prefix
        for prefix in PAPER_MODULES if any(
            key.startswith(prefix) for key in extra)
    } == set(PAPER_MODULES)
    shapes = {
        key: (dino[key].shape, relation[key].shape)
        for key in dino if dino[key].shape != relation[key].shape
    }
    assert not shapes, shapes


def official_sine(pos: torch.Tensor,
                  num_pos_feats: int,
                  temperature: float = 10000.) -> torch.Tensor:
    """xiuqhou/Relation-DETR ``get_sine_pos_embed`` (exchange_xy=True),
    restated: per coordinate ``num_pos_feats // 2`` frequencies, each an
    interleaved (sin, cos) pair, x and y swapped."""
    index = torch.arange(num_pos_feats // 2, dtype=torch.float32)
    dim_t = temperature**(index * 2 / num_pos_feats)
    embed = pos.unsqueeze(-1) * 2 * math.pi / dim_t
    embed = torch.stack((embed.sin(), embed.cos()), -1).flatten(-2)
    embed = torch.cat(
        [embed[..., 1:2, :], embed[..., 0:1, :], embed[..., 2:, :]], -2)
    return embed.flatten(-2)


@pytest.mark.parametrize('path', [DINO_DEMO, RELATION_DETR_DEMO])
def test_reference_boxes_are_encoded_as_the_official_decoder(repo_root, path):
    """At width 128: ``embed_dims // 2`` sine features per box coordinate
    into a ``2 * embed_dims`` MLP, as ``get_sine_pos_embed(ref, C // 2)``."""
    model = build(model_cfg(repo_root, path)).eval()
    embed_dims = model.embed_dims
    assert embed_dims == 128
    head = model.decoder.ref_point_head
    assert head.layers[0].in_features == 2 * embed_dims
    seen = {}

    def record_boxes(module, args, kwargs):
        seen['ref'] = kwargs['reference_points']

    def record_encoding(module, args, output):
        seen.setdefault('sine', args[0])  # layer 0

    hooks = [
        model.decoder.register_forward_pre_hook(record_boxes,
                                                with_kwargs=True),
        head.register_forward_hook(record_encoding)
    ]
    images = torch.randn(2, 3, 96, 112)
    samples = [
        DetDataSample(
            metainfo=dict(img_shape=(96, 112), batch_input_shape=(96, 112)))
        for _ in range(2)
    ]
    with torch.no_grad():
        model._forward(images, samples)
    for hook in hooks:
        hook.remove()
    # no padding: the valid ratios are 1 and the layer-0 input is the box
    torch.testing.assert_close(seen['sine'],
                               official_sine(seen['ref'], embed_dims // 2))
