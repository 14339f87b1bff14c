"""Convert an official Depth-Anything-V2 or DINOv2 checkpoint for vitdense.

Accepts the official Depth-Anything-V2 files
(``depth_anything_v2_{vits,vitb,vitl}.pth``: ``pretrained.*`` and
``depth_head.*`` keys) and the DINOv2 hub files
(``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth``: ViT keys without prefix);
writes ``{'state_dict': ...}`` with the keys of vitdense's
``DepthAnythingV2``. The settings (arch, registers, DPT head) are read from
the weights, printed, and the result is loaded strictly into a model built
with them before it is written. The file is read without unpickling objects
and must have one of these layouts (see :mod:`vitdense.converters`).

Example::

    python tools/model_converters/depth_anything2vitdense.py \\
        depth_anything_v2_vitb.pth depth-anything-v2_vitb_vitdense.pth
"""
from vitdense.converters import (convert_depth_anything_checkpoint,
                                 converter_main, open_checkpoint,
                                 save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Convert ``src``, verify it strictly, save ``{'state_dict': ...}``."""
    with open_checkpoint(src) as checkpoint:
        state_dict, settings = convert_depth_anything_checkpoint(checkpoint)
    print(f'DepthAnythingV2 settings: {settings}')
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'Depth-Anything-V2 or DINOv2')


if __name__ == '__main__':
    main()
