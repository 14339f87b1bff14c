"""Convert official Swin checkpoints (microsoft/Swin-Transformer) for vitdense.

Accepts official classification checkpoints (``{'model': ...}``), the
official detection/segmentation checkpoints and mmdet/mmseg files; converts
them with mmdet's ``swin_converter`` (PatchMerging re-order included), reads
the variant from the weights, loads the result strictly into
``vitdense.SwinTransformer`` (a file that matches nothing raises) and writes
``{'state_dict': ...}`` with ``backbone.`` keys, loadable by vitdense's and
mmdet's/mmseg's Swin (``convert_weights=False``) through ``init_cfg``. The
file is read without unpickling objects and must have Swin's keys (see
:mod:`vitdense.converters`).

Example::

    python tools/model_converters/swin2vitdense.py \\
        swin_tiny_patch4_window7_224.pth swin-t_vitdense.pth
"""
from vitdense.converters import (convert_swin_checkpoint, converter_main,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, convert, verify strictly, save to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict, arch = convert_swin_checkpoint(checkpoint)
    print(f'Swin settings: {arch}')
    save_state_dict({'backbone.' + k: v for k, v in state_dict.items()}, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'Swin')


if __name__ == '__main__':
    main()
