"""Convert an official MonoDETR checkpoint to vitdense's MonoDETR.

Official: ZrrSkywalker/MonoDETR (its trainer saves ``{'model_state': ...,
'optimizer_state': ..., 'epoch': ...}``; a bare state dict works too). The
torchvision ResNet keys become mmdet ResNet's (with the BN counters the
official frozen BN lacks), ``input_proj`` the ChannelMapper neck; the depth
predictor, encoder, decoder and heads are mapped; the decoder's extra
self-attention projections are folded into the attention's input projection
and the weights the official forward never uses are dropped (see
:mod:`vitdense.converters.monodino_detr`). The file is read without
unpickling objects; the result, ``{'state_dict': ...}``, loads strictly.

Example::

    python tools/model_converters/monodetr2vitdense.py \
        checkpoint_best.pth monodetr_r50_vitdense.pth
"""
from vitdense.converters import (convert_monodetr, converter_main,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_monodetr(checkpoint)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'MonoDETR')


if __name__ == '__main__':
    main()
