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

The file is read without unpickling objects and must have the keys of the
mode (see :mod:`vitdense.converters`).

Examples::

    python tools/model_converters/vit_comer2vitdense.py \\
        mask_rcnn_dinov2_comer_small_fpn_1x_coco.pth vit-comer-s_det.pth
    python tools/model_converters/vit_comer2vitdense.py --vit --arch t \\
        deit_tiny_patch16_224-a1311bcf.pth vit-comer-t_deit-init.pth
"""
import argparse

from vitdense.converters import (convert_vit_comer_checkpoint, exit_on_refusal,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str, vit: bool = False, arch: str = 's',
            pretrain_size: int = 224) -> dict:
    """Convert ``src``, verify it strictly, save ``{'state_dict': ...}``."""
    with open_checkpoint(src) as checkpoint:
        state_dict, settings = convert_vit_comer_checkpoint(
            checkpoint, vit, arch, pretrain_size)
    print(f'ViTCoMer settings: {settings}')
    save_state_dict(state_dict, dst)
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
    with exit_on_refusal(parser):
        state_dict = convert(args.src, args.dst, args.vit, args.arch,
                             args.pretrain_size)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
