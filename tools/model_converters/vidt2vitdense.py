"""Convert an official ViDT / ViDT+ checkpoint (naver-ai/vidt) for vitdense.

Official: https://github.com/naver-ai/vidt (``methods/vidt/detector.py``,
Swin with RAM backbones). Reads a ``.pth`` holding a bare state dict or
``{'model': ...}`` / ``{'state_dict': ...}`` with vitdense's one safe reader
(:mod:`vitdense.converters.io`): tensors and plain containers only, never
arbitrary pickled objects. The released files also pickle the training
``argparse.Namespace`` under ``'args'`` and are refused as they are; re-save
their ``'model'`` entry as tensors first, in code you trust::

    import torch
    ckpt = torch.load('vidt_nano_50.pth', weights_only=False)
    torch.save({'model': ckpt['model']}, 'vidt_nano_50_tensors.pth')

Writes ``{'state_dict': ...}`` that ``configs/vidt/*`` models load strictly
(:func:`vitdense.converters.vidt.convert_vidt`). The official COCO heads are
91-way (indexed by COCO category id); ``--coco91-to-80`` keeps the 80
classes mmdet's ``CocoDataset`` uses, in its order (also in ViDT+'s token
classifier, after its "any object" row). With ``--config`` the
result is loaded into the built model with ``strict=True`` before it is
saved.

Example::

    python tools/model_converters/vidt2vitdense.py \\
        vidt_nano_50_tensors.pth vidt_swin-nano.pth --coco91-to-80 \\
        --config configs/vidt/vidt_swin-nano_8xb2-50e_coco.py
"""
import argparse

import torch

from vitdense.converters import (exit_on_refusal, open_checkpoint,
                                 save_state_dict)
from vitdense.converters.relation_detr import COCO80_CATEGORY_IDS
from vitdense.converters.vidt import convert_vidt


def convert(src: str,
            dst: str,
            coco91_to_80: bool = False,
            config: str = None) -> dict:
    """Read ``src``, map its keys, optionally check a strict load into the
    model of ``config``, save ``{'state_dict': ...}`` to ``dst``."""
    class_index = torch.tensor(COCO80_CATEGORY_IDS) if coco91_to_80 else None
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_vidt(checkpoint, class_index)
    if config is not None:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        from vitdense.registry import MODELS
        cfg = Config.fromfile(config)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        cfg.model.backbone.pop('init_cfg', None)
        MODELS.build(cfg.model).load_state_dict(state_dict, strict=True)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official ViDT .pth')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--coco91-to-80',
        action='store_true',
        help='keep the 80 COCO classes of the 91-way heads')
    parser.add_argument(
        '--config', help='vitdense config to check a strict load against')
    args = parser.parse_args()
    with exit_on_refusal(parser):
        state_dict = convert(args.src, args.dst, args.coco91_to_80,
                             args.config)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
