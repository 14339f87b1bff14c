"""Convert an official CrossFormer(++) checkpoint to vitdense's CrossFormer.

Accepts cheerss/CrossFormer classification checkpoints (``{'model': ...}``,
head dropped; old-branch buffers ``biases``/``relative_position_index``/
``attn_mask`` dropped), the user-saved ``backbone-crossformer-*.pth`` files and
the official mmdet/mmseg checkpoints (``{'state_dict': ...}`` with
``backbone.`` prefixes); writes ``{'state_dict': ...}`` with bare backbone
keys that ``CrossFormer(arch=...)`` loads strictly.

Example::

    python tools/model_converters/crossformer2vitdense.py \
        crossformer-s.pth crossformer-s_vitdense.pth
"""
import argparse
import os
import os.path as osp

import torch

from vitdense.models.backbones.crossformer import checkpoint_filter_fn


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
    parser.add_argument('src', help='official CrossFormer checkpoint')
    parser.add_argument('dst', help='output path')
    args = parser.parse_args()
    state_dict = convert(args.src, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
