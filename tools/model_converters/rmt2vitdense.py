"""Convert an official RMT checkpoint (qhfan/RMT) to vitdense's ``RMT``.

Accepts classification checkpoints (``{'model': ...}``, head dropped) and the
official mmdet/mmseg checkpoints (``{'state_dict': ...}`` with ``backbone.``
prefixes); writes ``{'state_dict': ...}`` with bare backbone keys that
``RMT(arch=...)`` loads strictly.

Example::

    python tools/model_converters/rmt2vitdense.py rmt_t.pth rmt-t_vitdense.pth
"""
import argparse
import os
import os.path as osp

import torch

from vitdense.models.backbones.rmt import checkpoint_filter_fn


def convert(src: str, dst: str) -> dict:
    """Load ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    state_dict = checkpoint_filter_fn(checkpoint)
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save({'state_dict': state_dict}, dst)
    return state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official RMT checkpoint')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args()
    state_dict = convert(args.src, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
