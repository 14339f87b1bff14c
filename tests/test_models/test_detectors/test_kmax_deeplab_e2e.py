"""kMaX-DeepLab end to end against the official meta-architecture.

``tests/data/kmax/kmax_e2e_official.npz`` comes from the official
``kMaXDeepLab`` (bytedance/kmax-deeplab@f8e1d04, ``kmax_deeplab/
kmax_model.py``) in eval mode on two raw uint8 images: its normalisation and
padding to ``INPUT.IMAGE_SIZE``, the detectron2 R50 and the kMaX head at
reduced width, and its semantic and panoptic inference (settings in the
README there). Here the same official checkpoint goes through
``tools/model_converters/kmax2vitdense.py`` into a ``KMaXDeepLab`` built from
the shipped R50 COCO config (its data preprocessor unchanged), loaded
strictly, and run by ``test_step`` (data preprocessor, then ``predict``).
"""
import ast
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tools.model_converters.kmax2vitdense import convert
from vitdense.registry import MODELS
from vitdense.utils import register_all_modules

register_all_modules(init_default_scope=False)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
DATA = osp.join(ROOT, 'tests', 'data', 'kmax', 'kmax_e2e_official.npz')
CONFIGS = osp.join(ROOT, 'configs', 'kmax_deeplab')
R50_COCO = osp.join(CONFIGS, 'kmax-deeplab_r50_32xb2-150k_coco-panoptic.py')
#: official ``INPUT.IMAGE_SIZE`` (configs/{coco,ade20k,cityscapes}/
#: panoptic_segmentation/kmax_r50.yaml); the nano configs pad to a multiple
#: of 32 only (any input size)
OFFICIAL_PAD = {'coco': (1281, 1281), 'ade20k': (1281, 1281),
                'cityscapes': (1025, 2049)}


def _official():
    """(official checkpoint ``{'model': ...}``, inputs, outputs, settings)."""
    data = np.load(DATA)
    state, inputs, outputs = {}, {}, {}
    for name in data.files:
        kind, _, key = name.partition(':')
        if kind == 'w':
            state[key] = torch.from_numpy(data[name])
        elif kind == 'q':  # ternary weights: int8 k x per-tensor scale
            state[key] = torch.from_numpy(data[name]).float() * float(
                data['s:' + key])
        elif kind == 'in':
            inputs[key] = data[name]
        elif kind == 'out':
            outputs[key] = torch.from_numpy(data[name])
    settings = ast.literal_eval(str(data['settings']))
    return {'model': state}, inputs, outputs, settings


def _model_cfg(settings: dict) -> Config:
    """The shipped R50 COCO model at the fixture's reduced size; the data
    preprocessor, norms, thresholds and everything else as shipped."""
    cfg = Config.fromfile(R50_COCO).model
    channels = [settings['in_channels'][k]
                for k in ('res2', 'res3', 'res4', 'res5')]
    cfg.num_things_classes = settings['num_things']
    cfg.num_stuff_classes = settings['num_stuff']
    cfg.pad_size = tuple(settings['image_size'])
    cfg.backbone.base_channels = settings['stem_channels']
    cfg.backbone.init_cfg = None
    cfg.panoptic_head.in_channels = tuple(channels)
    cfg.panoptic_head.pixel_decoder = dict(
        num_blocks=settings['pixel_dec_layers'],
        base_channels=settings['pixel_dec_channels'],
        block_types=settings['layer_types'])
    cfg.panoptic_head.transformer_decoder = dict(
        num_layers=settings['trans_dec_layers'],
        num_queries=settings['num_queries'])
    cfg.test_cfg = dict(panoptic_on=True, semantic_on=True)
    return cfg


def _encode(segments: torch.Tensor, info: np.ndarray,
            num_classes: int) -> torch.Tensor:
    """Official segment ids + (id, category, isthing) rows -> mmdet's
    panoptic encoding (void = ``num_classes``; the k-th thing in id order
    gets ``label + k * INSTANCE_OFFSET``)."""
    out = torch.full_like(segments, num_classes)
    instance = 0
    for segment_id, label, is_thing in sorted(info.tolist()):
        value = label
        if is_thing:
            instance += 1
            value += instance * INSTANCE_OFFSET
        out[segments == segment_id] = value
    return out


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """(official outputs, settings, head outputs, data samples) of
    vitdense's converted model on the fixture's images."""
    checkpoint, inputs, outputs, settings = _official()
    init_default_scope('mmdet')
    model = MODELS.build(_model_cfg(settings))
    model.eval()
    tmp = tmp_path_factory.mktemp('kmax_e2e')
    src, dst = str(tmp / 'official.pth'), str(tmp / 'out.pth')
    torch.save(checkpoint, src)
    convert(src, dst)
    state = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    images, samples = [], []
    for i in range(2):
        rgb = inputs[f'image{i}']  # (3, h, w) uint8, RGB as the official
        h, w = rgb.shape[1:]
        ori_h, ori_w = (int(v) for v in inputs[f'ori_shape{i}'])
        # mmcv loads BGR; the config's data preprocessor flips it to RGB
        images.append(torch.from_numpy(rgb[::-1].copy()))
        samples.append(DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(ori_h, ori_w),
            scale_factor=(w / ori_w, h / ori_h))))
    head_outputs = []
    model.panoptic_head.register_forward_hook(
        lambda module, args, out: head_outputs.append(out))
    with torch.no_grad():
        results = model.test_step(dict(inputs=images, data_samples=samples))
    return outputs, settings, head_outputs[0], results


def test_kmax_e2e_decoder_logits_match_official(run):
    outputs, settings, head, _ = run
    n = settings['num_queries']
    assert head['pred_logits'].shape == (2, n, settings['num_things'] +
                                         settings['num_stuff'] + 1)
    pad_h, pad_w = settings['image_size']  # masks at stride 4
    assert head['pred_masks'].shape == (2, n, -(-pad_h // 4), -(-pad_w // 4))
    torch.testing.assert_close(head['pred_logits'], outputs['pred_logits'],
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(head['pred_masks'], outputs['pred_masks'],
                               rtol=0, atol=1e-4)
    assert len(head['aux_outputs']) == sum(settings['trans_dec_layers'])
    for i, aux in enumerate(head['aux_outputs']):
        for key in ('pred_logits', 'pred_masks'):
            torch.testing.assert_close(aux[key], outputs[f'aux{i}_{key}'],
                                       rtol=0, atol=1e-4, msg=f'aux{i} {key}')


def test_kmax_e2e_panoptic_and_semantic_match_official(run):
    outputs, settings, _, results = run
    num_classes = settings['num_things'] + settings['num_stuff']
    for i, sample in enumerate(results):
        panoptic = sample.pred_panoptic_seg.sem_seg[0]
        official = outputs[f'panoptic_seg{i}']
        assert panoptic.shape == official.shape == sample.ori_shape
        expected = _encode(official, outputs[f'segments{i}'].numpy(),
                           num_classes)
        assert torch.equal(panoptic, expected)
        probs = sample.seg_logits.data
        torch.testing.assert_close(probs[:, ::4, ::4],
                                   outputs[f'sem_seg{i}_every4'], rtol=0,
                                   atol=1e-4)
    # the fixture is not trivial: things and stuff, several segments
    segments = np.concatenate(
        [outputs[f'segments{i}'].numpy() for i in range(2)])
    assert len(segments) >= 3 and {0, 1} <= set(segments[:, 2].tolist())


@pytest.mark.parametrize(
    'path', sorted(glob.glob(osp.join(CONFIGS, 'kmax-deeplab_*.py'))),
    ids=osp.basename)
def test_kmax_configs_preprocess_as_official(path):
    """Every shipped config normalises and pads as the official
    ``kMaXDeepLab.forward``: RGB, (x - 127.5) / 127.5 (``MODEL.PIXEL_MEAN``
    / ``PIXEL_STD``), zeros padded bottom/right after normalising, to
    ``INPUT.IMAGE_SIZE`` for the official settings."""
    model = Config.fromfile(path).model
    preprocessor = model.data_preprocessor
    assert preprocessor.type in ('DetDataPreprocessor',
                                 'mmdet.DetDataPreprocessor')
    assert preprocessor.mean == [127.5] * 3
    assert preprocessor.std == [127.5] * 3
    assert preprocessor.bgr_to_rgb is True
    assert preprocessor.get('pad_value', 0) == 0
    if 'nano' in path:
        assert model.get('pad_size') is None
    else:
        dataset = osp.basename(path).split('_')[-1].split('-')[0]
        assert tuple(model.pad_size) == OFFICIAL_PAD[dataset]
