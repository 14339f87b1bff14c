"""Every config under ``configs/`` and ``projects/*/configs/`` builds and is
wired consistently.

* :func:`test_config_channels_match` builds each model on the meta device (no
  memory, no weight init), runs a meta tensor through the backbone and checks
  the widths it returns against what the neck and heads declare: backbone
  outputs = ``neck.in_channels``, neck outputs = the heads' input width, and
  for segmentors ``decode_head``/``auxiliary_head`` ``in_channels`` = the
  backbone outputs at their ``in_index``. The neck and segmentation heads are
  also run on the meta features, so a mismatch inside them raises too.
* :func:`test_configs_build_in_fresh_interpreter` builds every config the
  way mmdet's and mmseg's ``tools/train.py`` do, in one fresh interpreter that
  never calls ``vitdense.utils.register_all_modules``: ``Config.fromfile``
  imports ``custom_imports``, then what ``Runner.__init__`` builds from the
  registries, in the config's ``default_scope``: model, visualizer, default
  and custom hooks (``RNGStateHook`` must be among them).
  ``Runner.from_cfg`` itself costs 5-7 s a config on 2 cores (it formats the
  config with yapf three times), 80 configs would take ~8 min.
"""
import contextlib
import functools
import glob
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, REPO) for p in
    glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True) +
    glob.glob(osp.join(REPO, 'projects', '*', 'configs', '**', '*.py'),
              recursive=True) if '_base_' not in osp.relpath(p, REPO))


@pytest.fixture(scope='module', autouse=True)
def cached_metafiles():
    """Parse mmdet's/mmseg's model-zoo metafiles once per module.

    mmengine reads all ~400 ``metafile.yml`` of a package for every
    ``mmdet::``/``mmseg::`` base it resolves (1-2 s each, 3-6 s per config);
    the files do not change during a test session.
    """
    import mmengine.config.utils as config_utils
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config_utils, 'load',
                      functools.lru_cache(maxsize=None)(config_utils.load))
        yield


@contextlib.contextmanager
def parameters_on_meta():
    """Create every parameter and buffer on the meta device.

    accelerate's ``init_empty_weights``: ``with torch.device('meta')`` alone
    cannot build mmdet's Swin, whose ``__init__`` calls ``.item()`` on
    ``torch.linspace``; here only parameters and buffers move to meta (no
    memory, no weight init) and other tensors stay on the CPU.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def on_meta_parameter(module, name, param):
        register_parameter(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(
                param.to('meta'), requires_grad=param.requires_grad)

    def on_meta_buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor, persistent)
        if tensor is not None:
            module._buffers[name] = tensor.to('meta')

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nn.Module, 'register_parameter', on_meta_parameter)
        patch.setattr(nn.Module, 'register_buffer', on_meta_buffer)
        yield


def build_on_meta(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in its default scope with meta parameters."""
    from mmengine.registry import MODELS
    init_default_scope(cfg.default_scope)
    with parameters_on_meta():
        return MODELS.build(cfg.model)


def backbone_features(backbone: nn.Module) -> list:
    """The backbone's outputs for a meta batch of two 64x96 images.

    ViT-CoMer's deformable attention reads the level shapes as data
    (``spatial_shapes.tolist()``), which meta tensors do not hold; its
    outputs are stated instead: ``embed_dims`` wide at strides 4, 8, 16, 32.
    """
    with torch.device('meta'):
        if type(backbone).__name__ == 'ViTCoMer':
            return [torch.empty(2, backbone.embed_dims, 64 // s, 96 // s)
                    for s in (4, 8, 16, 32)]
        outs = backbone(torch.empty(2, 3, 64, 96))
        if type(backbone).__name__ == 'SwinRAM':  # (maps, [DET], [DET] pos)
            outs = outs[0]
        if type(backbone).__name__ == 'DepthAnythingV2':  # (maps, depth)
            outs = outs[0]
        return list(outs)


def test_config_list_covers_every_family():
    families = {p.split('/')[1] for p in CONFIGS}
    assert {'crossformer', 'demo', 'relation_detr', 'rmt', 'swin',
            'vit_comer', 'example_project'} <= families
    assert len(CONFIGS) >= 75


@pytest.mark.parametrize('config', CONFIGS)
def test_config_channels_match(config, monkeypatch):
    from vitdense.utils import register_all_modules
    monkeypatch.chdir(REPO)  # the example project imports from the root
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO, config))
    model = build_on_meta(cfg)
    feats = backbone_features(model.backbone)
    widths = [f.shape[1] for f in feats]

    if hasattr(model, 'decode_head'):  # mmseg EncoderDecoder
        if getattr(model, 'with_neck', False):
            assert list(cfg.model.neck.in_channels) == widths, config
            with torch.device('meta'):
                feats = model.neck(feats)
            widths = [f.shape[1] for f in feats]
        for head in [model.decode_head] + (
                [model.auxiliary_head] if model.with_auxiliary_head else []):
            index = head.in_index
            want = ([widths[i] for i in index]
                    if isinstance(index, (list, tuple)) else widths[index])
            got = (list(head.in_channels) if isinstance(
                head.in_channels, (list, tuple)) else head.in_channels)
            assert got == want, f'{config}: {type(head).__name__}'
            with torch.device('meta'):
                assert head(feats).shape[1] == head.out_channels
        return

    if hasattr(model, 'feature_fusion'):  # MonoDINO-DETR: no neck
        with torch.device('meta'):
            levels = model.feature_fusion(feats[-model.num_levels:])
        assert len(levels) == len(model.level_embed), config
        assert {f.shape[1] for f in levels} == {model.encoder.embed_dims}, (
            config)
        return
    if hasattr(model, 'depth_predictor'):  # MonoDETR: neck levels
        assert list(cfg.model.neck.in_channels) == widths, config
        with torch.device('meta'):
            levels = model.neck(feats)
        assert len(levels) == len(model.level_embed), config
        assert {f.shape[1] for f in levels} == {model.encoder.embed_dims}, (
            config)
        return

    if hasattr(model, 'panoptic_head') and not hasattr(model, 'neck'):
        # kMaX-DeepLab: the pixel decoder reads the backbone levels
        decoder = model.panoptic_head.pixel_decoder
        assert list(cfg.model.panoptic_head.in_channels) == widths, config
        with torch.device('meta'):
            outs = decoder(feats)
        assert [f.shape[1] for f in outs] == decoder.out_channels, config
        return

    neck_cfg = cfg.model.neck
    assert list(neck_cfg.in_channels) == widths, config
    with torch.device('meta'):
        outs = model.neck(feats)
    assert {f.shape[1] for f in outs} == {neck_cfg.out_channels}, config
    width = neck_cfg.out_channels
    if hasattr(model, 'rpn_head'):  # two-stage
        assert model.rpn_head.in_channels == width, config
        roi = model.roi_head
        assert roi.bbox_roi_extractor.out_channels == width, config
        assert roi.bbox_head.in_channels == width, config
        if roi.with_mask:
            assert roi.mask_roi_extractor.out_channels == width, config
            assert roi.mask_head.in_channels == width, config
    elif hasattr(model, 'encoder') or type(model).__name__ == 'ViDT':
        # DETR family (ViDT has no encoder)
        assert model.embed_dims == width, config
        assert model.bbox_head.embed_dims == width, config
        assert len(outs) == model.num_feature_levels, config
    else:  # one-stage
        assert model.bbox_head.in_channels == width, config


FRESH_BUILD = textwrap.dedent('''
    import functools, sys
    import mmengine.config.utils as config_utils
    from mmengine.config import Config
    from mmengine.registry import (HOOKS, MODELS, VISUALIZERS,
                                   init_default_scope)

    sys.path.insert(0, 'tests')
    from test_configs import parameters_on_meta

    # speed only: parse the model-zoo metafiles once (see cached_metafiles)
    config_utils.load = functools.lru_cache(maxsize=None)(config_utils.load)
    work_dir, failed = sys.argv[1], []
    for i, path in enumerate(sys.argv[2:]):
        try:
            cfg = Config.fromfile(path)  # imports cfg.custom_imports
            # what Runner.__init__ builds from the registries, in its order
            init_default_scope(cfg.default_scope)
            with parameters_on_meta():
                MODELS.build(cfg.model)
            VISUALIZERS.build(
                dict(cfg.visualizer, name=f'config{i}', save_dir=work_dir))
            hooks = [HOOKS.build(h) for h in cfg.default_hooks.values()]
            hooks += [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
            assert 'RNGStateHook' in {type(h).__name__ for h in hooks}, (
                'no RNGStateHook')
        except Exception as e:
            failed.append(f'{path}: {type(e).__name__}: {e}'.splitlines()[0])
    print('\\n'.join(failed))
    sys.exit(1 if failed else 0)
''')


@pytest.mark.slow
def test_configs_build_in_fresh_interpreter(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-c', FRESH_BUILD, str(tmp_path)] + CONFIGS,
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
