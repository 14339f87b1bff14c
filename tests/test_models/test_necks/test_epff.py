"""EPFF, ViDT+'s pyramid fusion neck: parity with the official
``FPNFusionModule`` and its build from the registry name.

``tests/data/vidt/epff_official.pth`` comes from the official code at
naver-ai/vidt@5207d04 (``methods/vidt/fpn_fusion.py``, the same file on the
``vidt-plus`` branch); ``tests/data/vidt/README.md`` gives the settings.
"""
import os.path as osp

import pytest
import torch

DATA = osp.join(
    osp.dirname(osp.dirname(osp.dirname(__file__))), 'data', 'vidt')


def test_epff_matches_official():
    """Three odd-sized maps through the official FPNFusionModule and the
    converted, strictly loaded EPFF: the fused maps, coarse to fine."""
    from vitdense.converters.vidt import convert_epff
    from vitdense.models.necks import EPFF
    data = torch.load(osp.join(DATA, 'epff_official.pth'), weights_only=True)
    settings = data['settings']
    neck = EPFF(settings['embed_dims'], out_channels=settings['fuse_dim'])
    state_dict = {k: v.float() for k, v in data['state_dict'].items()}
    neck.load_state_dict(convert_epff(state_dict), strict=True)
    with torch.no_grad():
        outs = neck([x.float() for x in data['inputs']])
    assert [o.shape for o in outs] == [o.shape for o in data['outputs']]
    assert outs[0].shape[-2:] == (4, 5)  # coarsest first, as the official
    for out, expected in zip(outs, data['outputs']):
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_epff_builds_from_its_registry_name_and_counts_its_maps():
    """``type='EPFF'`` (configs/vidt/vidt-plus_*) builds the neck of
    ``vitdense.models.necks``; a wrong number of maps is named."""
    from vitdense.models.necks import EPFF
    from vitdense.registry import MODELS
    neck = MODELS.build(
        dict(type='EPFF', in_channels=[8, 16], out_channels=32))
    assert type(neck) is EPFF
    outs = neck([torch.zeros(1, 8, 9, 7), torch.zeros(1, 16, 5, 4)])
    assert [o.shape for o in outs] == [(1, 32, 5, 4), (1, 32, 9, 7)]
    with pytest.raises(ValueError, match='expects 2 maps'):
        neck([torch.zeros(1, 8, 9, 7)])
