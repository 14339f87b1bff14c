"""Convert an official kMaX-DeepLab checkpoint to vitdense.

Official: bytedance/kmax-deeplab (detectron2; its checkpoints hold
``{'model': ...}``). The pixel decoder, transformer decoder and aux semantic
head map onto vitdense's ``KMaXDeepLabHead`` under ``panoptic_head.``; the
detectron2 ResNet onto mmdet's ``ResNet`` under ``backbone.`` (ConvNeXt keys
are kept as they are); the conv bias before the pixel-embedding BN is folded
into its running mean (see :mod:`vitdense.converters.kmax`). The file is read
without unpickling objects; the result, ``{'state_dict': ...}``, loads
strictly.

Example::

    python tools/model_converters/kmax2vitdense.py \
        kmax_r50.pth kmax-deeplab_r50_vitdense.pth
"""
from vitdense.converters import (convert_kmax, converter_main,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_kmax(checkpoint)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'kMaX-DeepLab')


if __name__ == '__main__':
    main()
