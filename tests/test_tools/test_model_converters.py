"""Every converter in tools/model_converters reads through vitdense's one
safe reader (no pickled code runs) and refuses checkpoints of another model
family, naming the file and the keys it expected, without writing output."""
import importlib
import json
import os
import os.path as osp
import sys

import pytest
import torch

from vitdense.utils import UnsafeCheckpointError

DATA = osp.join(osp.dirname(__file__), '..', 'data')
TOOLS = ('crossformer2vitdense', 'rmt2vitdense', 'swin2vitdense',
         'vit_comer2vitdense', 'relation_detr2vitdense',
         'monodino_detr2vitdense', 'monodetr2vitdense',
         'depth_anything2vitdense', 'kmax2vitdense')


class _Payload:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _run_main(tool: str, argv: list, monkeypatch, capsys):
    """Exit status and stderr of the tool's ``main``."""
    module = importlib.import_module(f'tools.model_converters.{tool}')
    monkeypatch.setattr(sys, 'argv', [f'{tool}.py', *argv])
    with pytest.raises(SystemExit) as info:
        module.main()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize('zip_format', [True, False],
                         ids=['zip', 'legacy'])
@pytest.mark.parametrize('tool', TOOLS)
def test_converter_never_runs_pickled_code(tool, zip_format, tmp_path,
                                           monkeypatch, capsys):
    marker = str(tmp_path / 'pwned')
    src, dst = str(tmp_path / 'evil.pth'), str(tmp_path / 'out.pth')
    torch.save({'state_dict': {'w': torch.ones(1)},
                'payload': _Payload(marker)}, src,
               _use_new_zipfile_serialization=zip_format)

    module = importlib.import_module(f'tools.model_converters.{tool}')
    with pytest.raises(UnsafeCheckpointError) as info:
        module.convert(src, dst)
    assert src in str(info.value) and 'system' in str(info.value)

    code, err = _run_main(tool, [src, dst], monkeypatch, capsys)
    assert code == 1
    assert src in err and 'system' in err
    assert not osp.exists(marker)
    assert not osp.exists(dst)


def _keys(family: str) -> list:
    """Official key layouts (names only) of the fixtures' families."""
    if family == 'vit':  # a timm ViT / DeiT classification checkpoint
        return ['cls_token', 'pos_embed', 'patch_embed.proj.weight',
                'patch_embed.proj.bias', 'norm.weight', 'head.weight'] + [
                    f'blocks.{i}.{name}' for i in range(2) for name in (
                        'norm1.weight', 'attn.qkv.weight', 'attn.proj.weight',
                        'norm2.weight', 'mlp.fc1.weight', 'mlp.fc2.weight')]
    path, arch = dict(
        crossformer=('crossformer/official_keys.json', 's_cls'),
        rmt=('rmt/official_keys.json', 't_cls'),
        swin=('swin/official_swin_keys.json', 't'))[family]
    with open(osp.join(DATA, path)) as f:
        keys = json.load(f)[arch]
    return list(keys.get('keys', keys))


RELATION_DETR_KEYS = ["'transformer.*'", "'model.encoder.*'"]


@pytest.mark.parametrize('tool, family, args, expected', [
    ('crossformer2vitdense', 'rmt', [],
     ['patch_embed.projs.0.weight',
      'layers.0.blocks.0.attn.pos.pos_proj.weight']),
    ('rmt2vitdense', 'vit', [],
     ['patch_embed.proj.0.weight',
      'layers.0.blocks.0.retention.q_proj.weight']),
    ('rmt2vitdense', 'swin', [],
     ['patch_embed.proj.0.weight',
      'layers.0.blocks.0.retention.q_proj.weight']),
    ('swin2vitdense', 'crossformer', [],
     ['layers.0.blocks.0.attn.relative_position_bias_table',
      'stages.0.blocks.0.attn.w_msa.relative_position_bias_table']),
    ('vit_comer2vitdense', 'rmt', [],
     ['level_embed', 'spm.stem.0.weight', 'blocks.0.attn.qkv.weight']),
    ('vit_comer2vitdense', 'swin', ['--vit'],
     ['patch_embed.proj.weight', 'blocks.0.attn.qkv.weight']),
    ('relation_detr2vitdense', 'swin', [], RELATION_DETR_KEYS),
    ('monodino_detr2vitdense', 'swin', [],
     ['tgt_embed.weight', 'depthaware_transformer.level_embed']),
    ('monodetr2vitdense', 'swin', [],
     ['query_embed.weight', 'backbone.0.body.conv1.weight']),
    # a plain ViT without DINOv2's layer scale
    ('depth_anything2vitdense', 'vit', [],
     ['pretrained.cls_token', 'depth_head.projects.0.weight',
      'blocks.0.ls1.gamma']),
    ('kmax2vitdense', 'swin', [],
     ['sem_seg_head.predictor._cluster_centers.weight',
      'sem_seg_head.pixel_decoder._in_norms.0.weight']),
])
def test_converter_refuses_another_family(tool, family, args, expected,
                                          tmp_path, monkeypatch, capsys):
    src, dst = str(tmp_path / f'{family}.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': {k: torch.zeros(1) for k in _keys(family)}}, src)
    code, err = _run_main(tool, [*args, src, dst], monkeypatch, capsys)
    assert code == 1
    assert src in err
    for key in expected:
        assert key in err, (key, err)
    assert not osp.exists(dst)
