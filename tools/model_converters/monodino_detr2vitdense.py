"""Convert an official MonoDINO-DETR checkpoint to vitdense's MonoDINODETR.

Official: JihyeokKim/MonoDINO-DETR (its trainer saves ``{'model_state': ...,
'optimizer_state': ..., 'epoch': ...}``; a bare state dict works too). The
Depth-Anything-V2 backbone, the feature fusion, depth predictor, encoder,
decoder and heads are mapped; the decoder's extra self-attention projections
are folded into the attention's input projection and the weights the
official forward never uses are dropped (see
:mod:`vitdense.converters.monodino_detr`). The file is read without
unpickling objects; the result, ``{'state_dict': ...}``, loads strictly.

Example::

    python tools/model_converters/monodino_detr2vitdense.py \
        checkpoint_best.pth monodino-detr_vitb_vitdense.pth
"""
from vitdense.converters import (convert_monodino_detr, converter_main,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_monodino_detr(checkpoint)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'MonoDINO-DETR')


if __name__ == '__main__':
    main()
