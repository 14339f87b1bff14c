"""Convert an official Relation-DETR checkpoint (xiuqhou/Relation-DETR) to
vitdense's ``RelationDETR``.

Accepts a bare ``model.state_dict()`` or one wrapped in ``{'model': ...}`` /
``{'state_dict': ...}``; writes ``{'state_dict': ...}`` that
``configs/relation_detr/*`` models load strictly. The official COCO heads are
91-way (indexed by COCO category id); ``--coco91-to-80`` keeps the 80 classes
mmdet's ``CocoDataset`` uses, in its order. With ``--config`` the result is
loaded into the built model with ``strict=True`` before it is saved.

Example::

    python tools/model_converters/relation_detr2vitdense.py \
        relation_detr_resnet50_800_1333_coco_1x.pth relation-detr_r50.pth \
        --coco91-to-80 \
        --config configs/relation_detr/relation-detr_r50_8xb2-12e_coco.py
"""
import argparse
import os
import os.path as osp

import torch

from vitdense.models.detectors.relation_detr import \
    convert_relation_detr_official

#: COCO category ids of mmdet's 80 classes, in mmdet's order.
COCO80_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90)


def convert(src: str, dst: str, coco91_to_80: bool = False,
            config: str = None) -> dict:
    """Load ``src``, map its keys, optionally check a strict load into the
    model of ``config``, save ``{'state_dict': ...}`` to ``dst``."""
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint, dict) and key in checkpoint:
            checkpoint = checkpoint[key]
    class_index = torch.tensor(COCO80_CATEGORY_IDS) if coco91_to_80 else None
    state_dict = convert_relation_detr_official(checkpoint, class_index)
    if config is not None:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        from vitdense.registry import MODELS
        cfg = Config.fromfile(config)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        cfg.model.backbone.pop('init_cfg', None)
        model = MODELS.build(cfg.model)
        model.load_state_dict(state_dict, strict=True)
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save({'state_dict': state_dict}, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official Relation-DETR checkpoint')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--coco91-to-80',
        action='store_true',
        help='keep the 80 COCO classes of the official 91-way heads')
    parser.add_argument(
        '--config', help='vitdense config to check a strict load against')
    args = parser.parse_args()
    state_dict = convert(args.src, args.dst, args.coco91_to_80, args.config)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
