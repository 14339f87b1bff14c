"""A module registered once in vitdense builds from mmdet-, mmseg- and
vitdense-scope configs, without shadowing a name that mmdet, mmseg or the
MMEngine root own."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope
from torch import nn

from vitdense.registry import MODELS as VITDENSE_MODELS
from vitdense.utils import register_all_modules


@pytest.fixture
def probe_backbone():
    register_all_modules(init_default_scope=False)

    class ProbeBackbone(nn.Module):

        def __init__(self, width=4):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, stride=2)

        def forward(self, x):
            return (self.conv(x), )

    VITDENSE_MODELS.register_module(module=ProbeBackbone)
    yield ProbeBackbone
    for registry in (VITDENSE_MODELS, ROOT_MODELS):
        registry._module_dict.pop('ProbeBackbone', None)
    VITDENSE_MODELS._published.pop('ProbeBackbone', None)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'vitdense'])
def test_backbone_registered_once_builds_in_every_scope(probe_backbone,
                                                        scope):
    cfg = Config(dict(default_scope=scope,
                      model=dict(type='ProbeBackbone', width=5)))
    with DefaultScope.overwrite_default_scope(scope):
        registry = {
            'mmdet': __import__('mmdet.registry').registry.MODELS,
            'mmseg': __import__('mmseg.registry').registry.MODELS,
            'vitdense': VITDENSE_MODELS
        }[scope]
        model = registry.build(cfg.model)
    assert isinstance(model, probe_backbone)
    assert model(torch.zeros(1, 3, 8, 8))[0].shape == (1, 5, 3, 3)


def test_backbone_in_mmdet_detector_config(probe_backbone):
    from mmdet.registry import MODELS as MMDET_MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = _build_retinanet(MMDET_MODELS)
    assert isinstance(detector.backbone, probe_backbone)


def _build_retinanet(registry):
    return registry.build(dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(type='ProbeBackbone', width=8),
        neck=dict(type='FPN', in_channels=[8], out_channels=8, num_outs=1),
        bbox_head=dict(
            type='RetinaHead', num_classes=2, in_channels=8,
            feat_channels=8, stacked_convs=1,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=1, ratios=[1.0],
                                  strides=[2]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss'))))


def test_backbone_in_mmseg_segmentor_config(probe_backbone):
    from mmseg.registry import MODELS as MMSEG_MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        segmentor = MMSEG_MODELS.build(dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(type='ProbeBackbone', width=8),
            decode_head=dict(type='FCNHead', in_channels=8, channels=8,
                             num_convs=1, num_classes=3, in_index=0)))
    assert isinstance(segmentor.backbone, probe_backbone)


def test_prefixed_name_and_existing_mmdet_names_are_kept():
    register_all_modules(init_default_scope=False)
    from mmdet.models import DINO
    from mmdet.registry import MODELS as MMDET_MODELS
    from vitdense.models.detectors import AnyWidthDINO
    assert MMDET_MODELS.get('AnyWidthDINO') is AnyWidthDINO
    assert MMDET_MODELS.get('vitdense.AnyWidthDINO') is AnyWidthDINO
    assert MMDET_MODELS.get('DINO') is DINO


def test_register_all_modules_sets_vitdense_scope():
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'vitdense'


def test_registration_writes_nothing_into_mmdet_or_mmseg(probe_backbone):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS
    assert 'ProbeBackbone' not in MMDET_MODELS.module_dict
    assert 'ProbeBackbone' not in MMSEG_MODELS.module_dict
    assert ROOT_MODELS.module_dict['ProbeBackbone'] is probe_backbone


def test_force_replaces_what_vitdense_published(probe_backbone):
    class NewProbe(probe_backbone):
        pass

    VITDENSE_MODELS.register_module(
        name='ProbeBackbone', module=NewProbe, force=True)
    assert ROOT_MODELS.get('ProbeBackbone') is NewProbe
    assert VITDENSE_MODELS.get('ProbeBackbone') is NewProbe


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_mmcv_msda_is_not_shadowed_in_mmdet_and_mmseg_scopes(scope):
    from mmcv.ops import MultiScaleDeformableAttention as MMCVMSDA
    from vitdense.ops import MultiScaleDeformableAttention
    register_all_modules(init_default_scope=False)
    registry = {
        'mmdet': __import__('mmdet.registry').registry.MODELS,
        'mmseg': __import__('mmseg.registry').registry.MODELS,
    }[scope]
    cfg = dict(type='MultiScaleDeformableAttention', embed_dims=32,
               num_heads=4)
    with DefaultScope.overwrite_default_scope(scope):
        assert type(registry.build(cfg)) is MMCVMSDA
        assert isinstance(
            registry.build(
                dict(cfg, type='vitdense.MultiScaleDeformableAttention')),
            MultiScaleDeformableAttention)
    with DefaultScope.overwrite_default_scope('vitdense'):
        assert isinstance(VITDENSE_MODELS.build(cfg),
                          MultiScaleDeformableAttention)


def test_import_order_neither_collides_nor_shadows(repo_root):
    """vitdense imported before mmdet/mmseg: registering imports neither
    mmdet.models nor mmseg.models, a vitdense name that mmdet registers later
    does not break mmdet's import, and each scope gets its own class."""
    code = textwrap.dedent("""
        import sys
        from torch import nn
        import vitdense.ops
        from vitdense.registry import MODELS
        assert 'mmdet.models' not in sys.modules, 'mmdet imported'
        assert 'mmseg.models' not in sys.modules, 'mmseg imported'

        @MODELS.register_module()
        class DINO(nn.Module):  # a name mmdet registers later
            pass

        @MODELS.register_module(name='ConvModule', force=True)
        class Conv(nn.Module):  # force never takes the root's names
            pass

        from mmcv.cnn import ConvModule
        assert MODELS.parent.get('ConvModule') is ConvModule
        import mmdet.models, mmseg.models
        from mmcv.ops import MultiScaleDeformableAttention as MMCVMSDA
        from mmdet.registry import MODELS as MMDET
        from mmseg.registry import MODELS as MMSEG
        assert MMDET.get('DINO') is mmdet.models.DINO
        assert MODELS.get('DINO') is DINO
        assert MMDET.get('vitdense.DINO') is DINO
        for registry in (MMDET, MMSEG, MODELS.parent):
            msda = registry.get('MultiScaleDeformableAttention')
            assert msda is MMCVMSDA, registry
        assert MODELS.get('MultiScaleDeformableAttention') is \\
            vitdense.ops.MultiScaleDeformableAttention
        print('order ok')
    """)
    result = subprocess.run([sys.executable, '-c', code], cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'order ok' in result.stdout
