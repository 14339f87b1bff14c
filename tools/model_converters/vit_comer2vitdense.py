"""Convert official ViT-CoMer and plain ViT checkpoints for vitdense.

Two modes:

* default: an official detection or segmentation checkpoint
  (``{'state_dict': ...}`` with ``backbone.`` keys) -> bare backbone keys.
  The ViTCoMer settings (arch, flavour, MRFP ratio, pretrain size) are read
  from the weights, printed, and the result is loaded strictly into a model
  built with them before it is written.
* ``--vit``: a plain ViT / DeiT / DINOv2 / BEiT checkpoint -> the ViT part of
  ViTCoMer (position embeddings resized to ``--pretrain-size``), checked
  against ``ViTCoMer(arch=--arch)`` (every key used, every ViT weight given).

Examples::

    python tools/model_converters/vit_comer2vitdense.py \\
        mask_rcnn_dinov2_comer_small_fpn_1x_coco.pth vit-comer-s_det.pth
    python tools/model_converters/vit_comer2vitdense.py --vit --arch t \\
        deit_tiny_patch16_224-a1311bcf.pth vit-comer-t_deit-init.pth
"""
import argparse
import os
import os.path as osp

import torch

from vitdense.models.backbones.vit_comer import (ViTCoMer, convert_vit_comer,
                                                 convert_vit_to_vit_comer,
                                                 infer_vit_comer_settings,
                                                 load_vit_comer_state_dict)


def convert(src: str, dst: str, vit: bool = False, arch: str = 's',
            pretrain_size: int = 224) -> dict:
    """Convert ``src``, verify it strictly, save ``{'state_dict': ...}``."""
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    if vit:
        state_dict = convert_vit_to_vit_comer(checkpoint, pretrain_size)
        settings = dict(arch=arch, pretrain_size=pretrain_size)
    else:
        state_dict = convert_vit_comer(checkpoint)
        settings = infer_vit_comer_settings(state_dict)
        if settings['arch'] is None:
            raise ValueError('no ViTCoMer variant has embed/depth of this '
                             'checkpoint; build with an arch dict instead')
    print(f'ViTCoMer settings: {settings}')
    load_vit_comer_state_dict(ViTCoMer(**settings), state_dict)
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save({'state_dict': state_dict}, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official ViT-CoMer or plain ViT file')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--vit', action='store_true',
                        help='src is a plain ViT/DeiT/DINOv2/BEiT checkpoint')
    parser.add_argument('--arch', default='s', help='t/s/b/l (with --vit)')
    parser.add_argument('--pretrain-size', type=int, default=224,
                        help='ViTCoMer pretrain_size (with --vit)')
    args = parser.parse_args()
    state_dict = convert(args.src, args.dst, args.vit, args.arch,
                         args.pretrain_size)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
