"""Convert official Swin checkpoints (microsoft/Swin-Transformer) for vitdense.

Accepts official classification checkpoints (``{'model': ...}``), the
official detection/segmentation checkpoints and mmdet/mmseg files; converts
them with mmdet's ``swin_converter`` (PatchMerging re-order included), reads
the variant from the weights, loads the result strictly into
``vitdense.SwinTransformer`` (a file that matches nothing raises) and writes
``{'state_dict': ...}`` with ``backbone.`` keys, loadable by vitdense's and
mmdet's/mmseg's Swin (``convert_weights=False``) through ``init_cfg``.

Example::

    python tools/model_converters/swin2vitdense.py \\
        swin_tiny_patch4_window7_224.pth swin-t_vitdense.pth
"""
import argparse
import os
import os.path as osp
import re

import torch

from vitdense.models.backbones.swin import (SwinTransformer, convert_swin,
                                            load_swin_state_dict)


def infer_swin_arch(state_dict: dict) -> dict:
    """Read embed_dims, depths, num_heads and window_size from weights."""
    if 'patch_embed.projection.weight' not in state_dict:
        raise RuntimeError('not a Swin checkpoint: no patch embedding '
                           '(wrong prefix?)')
    depths, heads = [], []
    for k, v in state_dict.items():
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.'
                     r'relative_position_bias_table', k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            while len(depths) <= i:
                depths.append(0)
                heads.append(0)
            depths[i] = max(depths[i], j + 1)
            heads[i] = v.shape[1]
            window = (int(v.shape[0]**0.5) + 1) // 2
    return dict(
        embed_dims=state_dict['patch_embed.projection.weight'].shape[0],
        depths=tuple(depths), num_heads=tuple(heads), window_size=window)


def convert(src: str, dst: str) -> dict:
    """Load ``src``, convert, verify strictly, save to ``dst``."""
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    state_dict = convert_swin(checkpoint)
    arch = infer_swin_arch(state_dict)
    print(f'Swin settings: {arch}')
    load_swin_state_dict(SwinTransformer(**arch), state_dict)
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save({'state_dict': {'backbone.' + k: v
                               for k, v in state_dict.items()}}, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official Swin checkpoint')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args()
    state_dict = convert(args.src, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
