"""Convert an official RMT checkpoint (qhfan/RMT) to vitdense's ``RMT``.

Accepts classification checkpoints (``{'model': ...}``, head dropped) and the
official mmdet/mmseg checkpoints (``{'state_dict': ...}`` with ``backbone.``
prefixes); writes ``{'state_dict': ...}`` with bare backbone keys that
``RMT(arch=...)`` loads strictly. The file is read without unpickling objects
and must have RMT's keys (see :mod:`vitdense.converters`).

Example::

    python tools/model_converters/rmt2vitdense.py rmt_t.pth rmt-t_vitdense.pth
"""
from vitdense.converters import (convert_rmt, converter_main, open_checkpoint,
                                 save_state_dict)


def convert(src: str, dst: str) -> dict:
    """Read ``src``, map its keys, save ``{'state_dict': ...}`` to ``dst``."""
    with open_checkpoint(src) as checkpoint:
        state_dict = convert_rmt(checkpoint)
    save_state_dict(state_dict, dst)
    return state_dict


def main() -> None:
    converter_main(__doc__, convert, 'RMT')


if __name__ == '__main__':
    main()
