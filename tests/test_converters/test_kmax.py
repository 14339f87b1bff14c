"""kMaX-DeepLab converter: the official detectron2 R50 onto mmdet's ResNet,
and a whole official checkpoint through ``kmax2vitdense.py`` loading
strictly. Fixtures: ``tests/data/kmax`` (bytedance/kmax-deeplab@f8e1d04,
see the README there)."""
import ast
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.models.backbones import ResNet

from tools.model_converters.kmax2vitdense import convert
from vitdense.converters import CheckpointLayoutError, convert_kmax
from vitdense.converters.kmax import convert_kmax_backbone
from vitdense.models.dense_heads.kmax_deeplab_head import KMaXDeepLabHead

DATA = osp.join(osp.dirname(osp.dirname(__file__)), 'data', 'kmax')


def _load(name: str):
    """(official state dict, inputs, outputs, settings) of a fixture."""
    data = np.load(osp.join(DATA, name))
    state, inputs, outputs = {}, {}, {}
    for key in data.files:
        kind, _, name = key.partition(':')
        if kind == 'w':
            state[name] = torch.from_numpy(data[key])
        elif kind == 'q':  # ternary weights: int8 k x per-tensor scale
            state[name] = torch.from_numpy(data[key]).float() * float(
                data['s:' + name])
        elif kind == 'in':
            inputs[name] = torch.from_numpy(data[key])
        elif kind == 'out':
            outputs[name] = torch.from_numpy(data[key])
    settings = (ast.literal_eval(str(data['settings']))
                if 'settings' in data.files else None)
    return state, inputs, outputs, settings


def _resnet() -> ResNet:
    """mmdet's ResNet-50 at the fixture's 1/16 width, official BN."""
    return ResNet(
        depth=50,
        base_channels=4,
        style='pytorch',
        norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
        norm_eval=False)


def test_kmax_official_resnet_maps_onto_mmdet_resnet():
    state, inputs, outputs, _ = _load('kmax_r50_official.npz')
    backbone = {
        convert_kmax_backbone(k[len('backbone.'):]): v
        for k, v in state.items()
    }
    model = _resnet()
    model.eval()  # mmdet's ResNet.train returns None
    model.load_state_dict(backbone, strict=True)
    with torch.no_grad():
        feats = model(inputs['images'])
    for feat, level in zip(feats, ('res2', 'res3', 'res4', 'res5')):
        torch.testing.assert_close(
            feat, outputs[level], rtol=0, atol=1e-4, msg=level)


def test_kmax2vitdense_converts_official_checkpoint(tmp_path):
    head_state, _, _, settings = _load('kmax_tiny_official.npz')
    backbone_state = _load('kmax_r50_official.npz')[0]
    src, dst = str(tmp_path / 'kmax.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': {**backbone_state, **head_state,
                          'criterion.empty_weight': torch.ones(6)},
                'iteration': 10}, src)
    state = convert(src, dst)
    saved = torch.load(dst, weights_only=True)['state_dict']
    assert list(saved) == list(state)
    # the pixel-embedding conv bias is folded into the BN running mean
    assert not any(k.endswith('pixel_conv2.conv.bias') for k in saved)
    bias = head_state['sem_seg_head.predictor._predcitor.'
                      '_pixel_space_head_last_convbn.conv.bias']
    mean = head_state['sem_seg_head.predictor._predcitor.'
                      '_pixel_space_head_last_convbn.norm.running_mean']
    torch.testing.assert_close(
        saved['panoptic_head.transformer_decoder.predictor.pixel_conv2.bn.'
              'running_mean'], mean - bias)

    _resnet().load_state_dict(
        {k[9:]: v for k, v in saved.items() if k.startswith('backbone.')},
        strict=True)
    head = KMaXDeepLabHead(
        [settings['in_channels'][k] for k in ('res2', 'res3', 'res4',
                                              'res5')],
        num_classes=settings['num_classes'],
        pixel_decoder=dict(
            num_blocks=settings['pixel_dec_layers'],
            base_channels=settings['pixel_dec_channels'],
            block_types=settings['layer_types']),
        transformer_decoder=dict(
            num_layers=settings['trans_dec_layers'],
            num_queries=settings['num_queries']))
    head.load_state_dict(
        {k[len('panoptic_head.'):]: v for k, v in saved.items()
         if k.startswith('panoptic_head.')}, strict=True)
    assert len(saved) == len(head.state_dict()) + len(_resnet().state_dict())


def test_kmax_converter_refuses_backbone_only_checkpoint():
    state = _load('kmax_r50_official.npz')[0]
    with pytest.raises(CheckpointLayoutError,
                       match='_cluster_centers.weight'):
        convert_kmax({'model': state})
