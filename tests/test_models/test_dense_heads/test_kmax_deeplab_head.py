"""kMaX-DeepLab network: parity with the official modules, any input size.

``tests/data/kmax/kmax_tiny_official.npz`` comes from the official code at
bytedance/kmax-deeplab@f8e1d04 (settings in the README there).
"""
import ast
import os.path as osp
import re

import numpy as np
import pytest
import torch

from vitdense.converters.kmax import convert_kmax
from vitdense.models.dense_heads.kmax_deeplab_head import KMaXDeepLabHead
from vitdense.models.layers.kmax_layers import (MAX_SPAN, AxialAttention,
                                                RelativePositionalEncoding)

DATA = osp.join(
    osp.dirname(osp.dirname(osp.dirname(__file__))), 'data', 'kmax',
    'kmax_tiny_official.npz')
LEVELS = ('res2', 'res3', 'res4', 'res5')


@pytest.fixture(scope='module')
def official():
    """(official state dict, inputs, outputs, rpe tables, settings);
    inputs/outputs at the second official size under ``size2/<name>``."""
    data = np.load(DATA)
    state, inputs, outputs, rpe = {}, {}, {}, {}
    for name in data.files:
        kind, _, key = name.partition(':')
        if kind == 'w':
            state[key] = torch.from_numpy(data[name])
        elif kind == 'q':  # ternary weights: int8 k x per-tensor scale
            state[key] = torch.from_numpy(data[name]).float() * float(
                data['s:' + key])
        elif kind in ('in', 'in2'):
            prefix = 'size2/' if kind == 'in2' else ''
            inputs[prefix + key] = torch.from_numpy(data[name])
        elif kind in ('out', 'out2'):
            prefix = 'size2/' if kind == 'out2' else ''
            outputs[prefix + key] = torch.from_numpy(data[name])
        elif kind == 'rpe':
            rpe[key] = torch.from_numpy(data[name])
    settings = ast.literal_eval(str(data['settings']))
    return state, inputs, outputs, rpe, settings


#: query width of the unit tests (official 256 / 128 / 2048 / 128)
SMALL_QUERIES = dict(
    query_channels=32, key_channels=16, ffn_channels=64, embed_channels=16)


def _head(settings: dict,
          small: bool = False,
          transformer_decoder_extra: dict = None,
          **kwargs) -> KMaXDeepLabHead:
    return KMaXDeepLabHead(
        [settings['in_channels'][k] for k in LEVELS],
        num_classes=settings['num_classes'],
        pixel_decoder=dict(
            num_blocks=settings['pixel_dec_layers'],
            base_channels=settings['pixel_dec_channels'],
            block_types=settings['layer_types']),
        transformer_decoder=dict(
            num_layers=settings['trans_dec_layers'],
            num_queries=settings['num_queries'],
            **(SMALL_QUERIES if small else {}),
            **(transformer_decoder_extra or {})),
        **kwargs)


@pytest.fixture(scope='module')
def converted(official):
    """The head with the converted official weights, in eval mode."""
    state, _, _, _, settings = official
    head = _head(settings).eval()
    head.load_state_dict(
        convert_kmax({'model': state}, head_prefix=''), strict=True)
    return head


def _feats(inputs: dict) -> list:
    return [inputs[k] for k in LEVELS]


def test_kmax_head_matches_official_modules(official, converted):
    _, inputs, outputs, _, settings = official
    feats = _feats(inputs)
    with torch.no_grad():
        pixel = converted.pixel_decoder(feats)
        out = converted(feats)
        aux_semantic = converted.transformer_decoder.aux_semantic_head(
            feats[3], feats[1], feats[0])
    for i, stride in enumerate((32, 16, 8)):
        torch.testing.assert_close(
            pixel[i], outputs[f'pixel_decoder_os{stride}'], rtol=0,
            atol=1e-4)
    torch.testing.assert_close(
        pixel[3][:, :8], outputs['pixel_decoder_os4_8ch'], rtol=0, atol=1e-4)
    assert set(out) == {'pred_logits', 'pred_masks', 'pixel_feature',
                        'aux_outputs'}  # no aux_semantic_pred in eval
    n, c = settings['num_queries'], settings['num_classes'] + 1
    assert out['pred_logits'].shape == (2, n, c)
    assert out['pred_masks'].shape == (2, n, 25, 33)
    assert out['pixel_feature'].shape == (2, 128, 25, 33)
    got = dict(
        pred_logits=out['pred_logits'],
        pred_masks=out['pred_masks'],
        pixel_feature_4ch=out['pixel_feature'][:, :4],
        aux_semantic_pred=aux_semantic)
    assert len(out['aux_outputs']) == sum(settings['trans_dec_layers'])
    for i, aux in enumerate(out['aux_outputs']):
        got[f'aux{i}_pred_logits'] = aux['pred_logits']
        got[f'aux{i}_pred_masks'] = aux['pred_masks']
        got[f'aux{i}_pixel_feature_4ch'] = aux['pixel_feature'][:, :4]
    assert set(got) == {
        k for k in outputs
        if not k.startswith(('pixel_dec', 'size2/', 'simple_aux'))}
    for key, value in got.items():
        torch.testing.assert_close(
            value, outputs[key], rtol=0, atol=1e-4, msg=key)


def test_kmax_aux_semantic_head_without_decoder_matches_official(official):
    """``USE_AUX_SEMANTIC_DECODER: False`` (official Cityscapes): the
    official head's weights replace the decoder head's and load strictly;
    the stride-32 logits equal the official ones."""
    state, inputs, outputs, _, settings = official
    simple = {k[len('simple/'):]: v for k, v in state.items()
              if k.startswith('simple/')}
    assert simple
    prefix = 'sem_seg_head.predictor._auxiliary_semantic_predictor.'
    full = {k: v for k, v in state.items()
            if not k.startswith(('simple/', prefix))}
    head = _head(settings, transformer_decoder_extra=dict(
        aux_semantic_decoder=False)).eval()
    head.load_state_dict(
        convert_kmax({'model': {**full, **simple}}, head_prefix=''),
        strict=True)
    feats = _feats(inputs)
    with torch.no_grad():
        logits = head.transformer_decoder.aux_semantic(
            (feats[3], feats[1], feats[0]))
    assert logits.shape == (2, settings['num_classes'], 4, 5)  # no void
    torch.testing.assert_close(
        logits, outputs['simple_aux_semantic_pred'], rtol=0, atol=1e-4)


def test_kmax_head_matches_official_at_a_second_fixed_size(
        official, converted):
    """The official code rebuilt for another fixed size (65x97) with the
    same weights: the one any-size head matches it too."""
    _, inputs, outputs, _, settings = official
    assert settings['image_size2'] == [65, 97]
    with torch.no_grad():
        out = converted([inputs[f'size2/{k}'] for k in LEVELS])
    assert out['pred_masks'].shape == (2, 8, 17, 25)
    torch.testing.assert_close(
        out['pred_masks'], outputs['size2/pred_masks'], rtol=0, atol=1e-4)
    torch.testing.assert_close(
        out['pred_logits'], outputs['size2/pred_logits'], rtol=0, atol=1e-4)
    for i, aux in enumerate(out['aux_outputs']):
        torch.testing.assert_close(
            aux['pred_logits'], outputs[f'size2/aux{i}_pred_logits'],
            rtol=0, atol=1e-4)


def test_kmax_relative_positions_equal_official_tables(official, converted):
    """At the official fixed size (97x129: stride-32 axes 4 and 5, stride-16
    axes 7 and 9) the per-size index gives the official tables."""
    _, _, _, rpe, _ = official
    lengths = {0: dict(_height_axis=4, _width_axis=5),
               1: dict(_height_axis=7, _width_axis=9)}
    assert len(rpe) == 12
    for key, table in rpe.items():
        stage, axis, which = re.fullmatch(
            r'stage(\d)_(height|width)_axis_(query|key|value)_rpe',
            key).groups()
        attention = getattr(
            converted.pixel_decoder.stages[int(stage)][0].attention,
            f'{axis}_axis')
        module = getattr(attention, f'{which}_rpe')
        length = lengths[int(stage)][f'_{axis}_axis']
        assert torch.equal(module(length), table), key


def test_kmax_relative_positions_clip_beyond_max_span():
    rpe = RelativePositionalEncoding(2)
    table = rpe(MAX_SPAN + 20)
    rows = rpe.embeddings.weight
    assert table.shape == (MAX_SPAN + 20, MAX_SPAN + 20, 2)
    assert torch.equal(table[0, -1], rows[-1])  # distance 274 -> last row
    assert torch.equal(table[-1, 0], rows[0])
    assert torch.equal(table[5, 5], rows[MAX_SPAN - 1])


def _resnet_feature_sizes(height: int, width: int) -> list:
    """Feature sizes of a ResNet (conv 7x7/2, max pool 3x3/2, three
    stride-2 3x3 convs) on an image, strides 4 to 32."""
    sizes, h, w = [], height, width
    for _ in range(5):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes[1:]


def _random_feats(settings, height, width, seed=0, batch=1):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, settings['in_channels'][k], h, w, generator=gen)
        for k, (h, w) in zip(LEVELS, _resnet_feature_sizes(height, width))
    ]


def test_kmax_head_runs_at_any_input_size(official, converted):
    """97x131 (stride-32 width 5, stride-4 33: no official config has this
    size) runs; outputs are finite with the stride-4 size."""
    _, _, _, _, settings = official
    feats = _random_feats(settings, 97, 131, batch=2)
    with torch.no_grad():
        out = converted(feats)
    assert out['pred_masks'].shape == (2, 8, 25, 33)
    assert all(a['pred_masks'].shape == (2, 8, 25, 33)
               for a in out['aux_outputs'])
    assert torch.isfinite(out['pred_masks']).all()
    feats = _random_feats(settings, 160, 40)  # portrait, even sizes
    with torch.no_grad():
        out = converted(feats)
    assert out['pred_masks'].shape == (1, 8, 40, 10)


def test_kmax_head_batch_of_padded_images(official, converted):
    """Images of different sizes zero-padded into one batch give what each
    gives alone at the padded size: nothing mixes across the batch."""
    _, _, _, _, settings = official
    small = _random_feats(settings, 33, 65, seed=1)
    large = _random_feats(settings, 65, 97, seed=2)
    padded = [torch.zeros_like(f) for f in large]
    for p, s in zip(padded, small):
        p[..., :s.shape[-2], :s.shape[-1]] = s
    batch = [torch.cat([p, f]) for p, f in zip(padded, large)]
    with torch.no_grad():
        out = converted(batch)
        alone = [converted(padded), converted(large)]
    for i in range(2):
        torch.testing.assert_close(
            out['pred_masks'][i:i + 1], alone[i]['pred_masks'], rtol=0,
            atol=1e-5)
        torch.testing.assert_close(
            out['aux_outputs'][0]['pred_logits'][i:i + 1],
            alone[i]['aux_outputs'][0]['pred_logits'], rtol=0, atol=1e-5)


def test_kmax_head_training_outputs_and_gradients(official):
    """Training adds ``aux_semantic_pred``; the k-means assignment has no
    gradient but every parameter gets one through the losses' inputs."""
    _, _, _, _, settings = official
    head = _head(settings, small=True)
    head.init_weights()
    head.train()
    feats = _random_feats(settings, 65, 65, batch=2)
    out = head(feats)
    assert out['aux_semantic_pred'].shape == (2, 6, 17, 17)
    assert out['pixel_feature'].shape == (2, 16, 17, 17)
    loss = out['pred_masks'].square().mean() + out['aux_semantic_pred'].mean()
    loss = loss + sum(a['pred_masks'].mean() + a['pred_logits'].mean()
                      for a in out['aux_outputs'])
    loss = loss + out['pred_logits'].mean() + out['pixel_feature'].mean()
    loss.backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None]
    assert no_grad == []


def test_kmax_official_init():
    """Official init: zero-init residual BNs, mask BN 0.1, void bias."""
    head = KMaXDeepLabHead(
        (8, 16, 24, 32),
        num_classes=3,
        pixel_decoder=dict(
            num_blocks=(1, 1, 1, 1), base_channels=(8, 8, 8, 8)),
        transformer_decoder=dict(
            num_layers=(1, 0, 0), num_queries=4, **SMALL_QUERIES))
    head.init_weights()
    block = head.pixel_decoder.stages[0][0]
    assert torch.all(block.conv3.bn.weight == 0)
    layer = head.transformer_decoder.layers[0]
    for m in (layer.query_conv3, layer.ffn[1], layer.kmeans_conv3):
        assert torch.all(m.bn.weight == 0)
    assert torch.all(layer.predictor.mask_norm.weight == 0.1)
    head.eval()
    with torch.no_grad():
        out = head([torch.randn(1, c, s, s) for c, s in
                    zip((8, 16, 24, 32), (9, 5, 3, 2))])
    # class head ~0 at init: void logit leads by log(3 * 0.9 / 0.1)
    void_gap = out['pred_logits'][..., -1] - out['pred_logits'][..., 0]
    assert torch.allclose(void_gap, torch.full_like(void_gap, np.log(27.)),
                          atol=0.2)


def test_kmax_syncbn_by_config():
    head = KMaXDeepLabHead(
        (8, 16, 24, 32),
        num_classes=3,
        pixel_decoder=dict(
            num_blocks=(1, 1, 1, 1), base_channels=(8, 8, 8, 8)),
        transformer_decoder=dict(num_layers=(1, 0, 0), num_queries=4),
        norm_cfg=dict(type='SyncBN', eps=1e-3, momentum=0.01))
    norms = [m for m in head.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(
        isinstance(m, torch.nn.SyncBatchNorm) and m.eps == 1e-3
        and m.momentum == 0.01 for m in norms)
    plain = KMaXDeepLabHead(
        (8, 16, 24, 32),
        num_classes=3,
        pixel_decoder=dict(
            num_blocks=(1, 1, 1, 1), base_channels=(8, 8, 8, 8)),
        transformer_decoder=dict(num_layers=(1, 0, 0), num_queries=4))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm)
                   for m in plain.modules())


def test_kmax_layers_reject_bad_settings():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        AxialAttention(16, 12, 24, num_heads=8)
    with pytest.raises(ValueError, match='one num_blocks'):
        KMaXDeepLabHead((8, 16, 24, 32),
                        pixel_decoder=dict(num_blocks=(1, 1, 1)))
    with pytest.raises(ValueError, match='unknown block types'):
        KMaXDeepLabHead((8, 16, 24, 32),
                        pixel_decoder=dict(block_types=('axial', ) * 3 +
                                           ('conv', )))
