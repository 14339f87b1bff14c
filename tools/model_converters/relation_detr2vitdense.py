"""Convert an official or HF transformers Relation-DETR checkpoint.

Official: xiuqhou/Relation-DETR; HF transformers:
``RelationDetrForObjectDetection``, e.g. hf.co/xiuqhou/relation-detr-resnet50.
The result loads into vitdense's ``RelationDETR``.

Accepts a ``.pth``/``pytorch_model.bin`` holding a bare state dict or one
wrapped in ``{'model': ...}`` / ``{'state_dict': ...}``, a ``.safetensors``
file (needs the ``safetensors`` package) or an HF model folder. Files are
read with ``torch.load(weights_only=True)``: tensors and plain containers
only, never arbitrary pickled objects. The layout is told from the keys
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
import os
import os.path as osp
import pickle
from typing import Dict

import torch

from vitdense.models.detectors.relation_detr import (
    convert_relation_detr_hf, convert_relation_detr_official,
    detect_relation_detr_layout)

#: COCO category ids of mmdet's 80 classes, in mmdet's order.
COCO80_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90)
CONVERTERS = dict(
    official=convert_relation_detr_official, hf=convert_relation_detr_hf)
#: weight files of an HF model folder, in order of preference
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


def load_state_dict(src: str) -> Dict[str, torch.Tensor]:
    """Tensors of ``src`` (a file or an HF model folder), unwrapped from
    ``'model'``/``'state_dict'``; refuses files that need unpickling."""
    if osp.isdir(src):
        found = [f for f in HF_WEIGHT_FILES if osp.isfile(osp.join(src, f))]
        if not found:
            raise FileNotFoundError(
                f'{src} holds none of {HF_WEIGHT_FILES} (sharded HF '
                'checkpoints are not supported)')
        src = osp.join(src, found[0])
    if src.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(
                f'reading {src} needs the safetensors package '
                '(pip install safetensors); or convert the '
                'pytorch_model.bin of the same model') from None
        return load_file(src, device='cpu')
    try:
        checkpoint = torch.load(src, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        reason = [
            line.strip() for line in str(err).splitlines()
            if 'Unsupported global' in line
        ]
        raise RuntimeError(
            f'{src} holds pickled Python objects besides tensors, and this '
            'tool does not unpickle arbitrary objects (torch.load with '
            f'weights_only=True refused it: {" ".join(reason) or err}). '
            'If you trust the file, '
            'save its model tensors alone in a separate step, e.g. '
            "torch.save(torch.load(src, weights_only=False)['model'], dst) "
            'for a training checkpoint, and convert that file.') from None
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint, dict) and key in checkpoint:
            checkpoint = checkpoint[key]
    return checkpoint


def convert(src: str,
            dst: str,
            coco91_to_80: bool = False,
            config: str = None,
            layout: str = 'auto') -> dict:
    """Load ``src``, map its keys (``layout``: ``'auto'``, ``'official'`` or
    ``'hf'``), optionally check a strict load into the model of ``config``,
    save ``{'state_dict': ...}`` to ``dst``."""
    checkpoint = load_state_dict(src)
    if layout == 'auto':
        layout = detect_relation_detr_layout(checkpoint)
    if layout not in CONVERTERS:
        raise ValueError(f'layout must be auto, official or hf, got '
                         f'{layout!r}')
    class_index = torch.tensor(COCO80_CATEGORY_IDS) if coco91_to_80 else None
    state_dict = CONVERTERS[layout](checkpoint, class_index)
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
    state_dict = convert(args.src, args.dst, args.coco91_to_80, args.config,
                         args.layout)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
