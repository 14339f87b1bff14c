"""Convert an official or HF transformers Relation-DETR checkpoint.

Official: xiuqhou/Relation-DETR; HF transformers:
``RelationDetrForObjectDetection``, e.g. hf.co/xiuqhou/relation-detr-resnet50.
The result loads into vitdense's ``RelationDETR``.

Accepts a ``.pth``/``pytorch_model.bin`` holding a bare state dict or one
wrapped in ``{'model': ...}`` / ``{'state_dict': ...}``, a ``.safetensors``
file or an HF model folder, read by vitdense's one safe reader
(:mod:`vitdense.converters.io`): tensors and plain containers only, never
arbitrary pickled objects. The layout is told from the keys
(``--layout auto``) or given. Writes ``{'state_dict': ...}`` that
``configs/relation_detr/*`` models load strictly. The COCO heads of both
layouts are 91-way (indexed by COCO category id); ``--coco91-to-80`` keeps
the 80 classes mmdet's ``CocoDataset`` uses, in its order. With ``--config``
the result is loaded into the built model with ``strict=True`` before it is
saved.

Example::

    python tools/model_converters/relation_detr2vitdense.py \
        relation_detr_resnet50_800_1333_coco_1x.pth relation-detr_r50.pth \
        --coco91-to-80 \
        --config configs/relation_detr/relation-detr_r50_8xb2-12e_coco.py
"""
import argparse

import torch

from vitdense.converters import (convert_relation_detr, exit_on_refusal,
                                 open_checkpoint, save_state_dict)
from vitdense.converters.relation_detr import COCO80_CATEGORY_IDS


def convert(src: str,
            dst: str,
            coco91_to_80: bool = False,
            config: str = None,
            layout: str = 'auto') -> dict:
    """Read ``src``, map its keys (``layout``: ``'auto'``, ``'official'`` or
    ``'hf'``), optionally check a strict load into the model of ``config``,
    save ``{'state_dict': ...}`` to ``dst``."""
    class_index = torch.tensor(COCO80_CATEGORY_IDS) if coco91_to_80 else None
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_relation_detr(checkpoint, layout, class_index)
    if config is not None:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        from vitdense.registry import MODELS
        cfg = Config.fromfile(config)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        cfg.model.backbone.pop('init_cfg', None)
        model = MODELS.build(cfg.model)
        model.load_state_dict(state_dict, strict=True)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'src',
        help='official .pth, HF pytorch_model.bin / model.safetensors, or '
        'an HF model folder')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--layout',
        choices=('auto', 'official', 'hf'),
        default='auto',
        help='key layout of src; auto tells it from the keys')
    parser.add_argument(
        '--coco91-to-80',
        action='store_true',
        help='keep the 80 COCO classes of the 91-way heads')
    parser.add_argument(
        '--config', help='vitdense config to check a strict load against')
    args = parser.parse_args()
    with exit_on_refusal(parser):
        state_dict = convert(args.src, args.dst, args.coco91_to_80,
                             args.config, args.layout)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
