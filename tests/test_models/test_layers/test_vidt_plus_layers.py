"""ViDT+ token-labeling head (:class:`vitdense.models.layers.TokenLabelHead`)
against the official ``DeformableTransformer`` token-label parts
(``gen_encoder_output_proposals`` + ``enc_output`` + ``enc_output_norm`` +
``token_embed``), random non-initial weights, batch 2, one padded image.

Fixture ``tests/data/vidt/plus_official.pth`` comes from naver-ai/vidt,
branch ``vidt-plus`` a8c48b5 (see ``tests/data/vidt/plus_README.md``).
"""
import math
import os.path as osp

import pytest
import torch

from vitdense.models.layers import TokenLabelHead
from vitdense.registry import MODELS

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'data',
                   'vidt', 'plus_official.pth')
#: official key prefix -> TokenLabelHead
KEYS = {
    'transformer.enc_output.': 'proj.',
    'transformer.enc_output_norm.': 'norm.',
    'transformer.token_embed.': 'classifier.'
}


@pytest.fixture(scope='module')
def official():
    return torch.load(FIXTURE, weights_only=True)['token_head']


def _head(data):
    head = TokenLabelHead(data['embed_dims'], num_classes=90).eval()
    state = {}
    for key, value in data['state_dict'].items():
        prefix = next(p for p in KEYS if key.startswith(p))
        state[KEYS[prefix] + key[len(prefix):]] = value
    head.load_state_dict(state, strict=True)
    return head


@pytest.mark.parametrize('padded', [True, False])
def test_token_label_head_matches_official(official, padded):
    head = _head(official)
    mask = official['memory_mask'] if padded else None
    with torch.no_grad():
        outs = head(official['memory'], mask, official['spatial_shapes'])
    expected = official['outputs' if padded else 'outputs_unpadded']
    assert [o.shape for o in outs] == [e.shape for e in expected]
    for out, exp in zip(outs, expected):
        assert (out - exp).abs().max() <= 1e-4


def test_token_label_head_zeroes_edge_and_padding_tokens(official):
    shapes = official['spatial_shapes']
    valid = TokenLabelHead.valid_tokens(shapes, official['memory_mask'], 2)
    first = valid[:, :56 * 3].view(2, 3, 56)
    # level 0 is 56 wide: 0.5 / 56 < 0.01 and 55.5 / 56 > 0.99, so the
    # official drops its first and last columns
    assert not first[0, :, [0, 55]].any() and first[0, :, 1:55].all()
    # image 1 is valid on 2 x 45 of level 0 (0.5 / 45 > 0.01)
    assert first[1, :2, :45].all() and not first[1, 2:].any()
    assert not first[1, :, 45:].any()


def test_token_label_head_builds_with_official_init():
    head = MODELS.build(
        dict(type='TokenLabelHead', embed_dims=16, num_classes=3))
    head.init_weights()
    torch.testing.assert_close(head.classifier.bias,
                               torch.full((4, ), -math.log(99.)))
    out = head(torch.randn(2, 6 + 2, 16), None, torch.tensor([[2, 3], [1, 2]]))
    assert [o.shape for o in out] == [(2, 2, 3, 4), (2, 1, 2, 4)]
