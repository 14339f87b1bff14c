"""Convert an official CrossFormer(++) checkpoint to vitdense's CrossFormer.

Accepts cheerss/CrossFormer classification checkpoints (``{'model': ...}``,
head dropped; old-branch buffers ``biases``/``relative_position_index``/
``attn_mask`` dropped), the user-saved ``backbone-crossformer-*.pth`` files and
the official mmdet/mmseg checkpoints (``{'state_dict': ...}`` with
``backbone.`` prefixes); writes ``{'state_dict': ...}`` with bare backbone
keys that ``CrossFormer(arch=...)`` loads strictly. The file is read without
unpickling objects and must have CrossFormer's keys (see
:mod:`vitdense.converters`).

Example::

    python tools/model_converters/crossformer2vitdense.py \
        crossformer-s.pth crossformer-s_vitdense.pth
"""
from vitdense.converters import (convert_crossformer, converter_main,
                                 open_checkpoint, save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_crossformer(checkpoint)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'CrossFormer')


if __name__ == '__main__':
    main()
