"""Count a detector's FLOPs and parameters for one input shape.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] \
        [--show-table] [--cfg-options ...]

mmdet 3.3's tool of the same name, with two differences. The input is a
dummy image of ``--shape`` passed through the model's data preprocessor (as
mmdet 2.x's tool did; mmdet 3.3 averages over val images), so no dataset is
needed. And vitdense's own ops are counted: mmengine's jit-based counter
knows only ``aten`` ops and would report them as unsupported and count them
as 0, so handles are registered for:

* ``vitdense::msda_forward`` (multi-scale deformable attention): per query,
  head, level and point, bilinear sampling reads 4 corners (4 x head_dim
  MACs) and the attention weight scales the sample (head_dim MACs): 5 x
  head_dim.
  mmengine counts the ``grid_sample`` of the PyTorch reference as the same 4
  x head_dim and skips the weighting (an elementwise ``mul``).
* ``vitdense::relation_forward`` (Relation-DETR's position relation bias):
  per (query, key) pair, the sine embedding (1 per channel, 4 x
  num_pos_feats = 64 channels) and its 1x1 projection to one bias per head
  (64 x heads MACs).
* ``aten::baddbmm``, which ``nn.MultiheadAttention`` uses for q.k^T when it
  gets a float attention mask (the relation bias), counted as ``bmm``.

FLOPs follow mmengine (fvcore): one multiply-add is one FLOP; elementwise
ops are not counted. The model runs in eval mode, so training-only parts
(denoising and hybrid queries) are not counted.
"""
import argparse
from functools import partial
from typing import Any, Dict, List, Sequence

import torch
from mmdet.structures import DetDataSample
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import bmm_flop_jit, get_shape
from mmengine.analysis.print_helper import (_format_size,
                                            complexity_stats_table)
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from vitdense.utils import register_all_modules


def msda_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """5 x head_dim MACs per query, head, level and point: 4 bilinear
    corners and the attention weight."""
    bs, _, heads, head_dim = get_shape(inputs[0])  # value
    _, queries, _, levels, points, _ = get_shape(inputs[3])  # locations
    return bs * queries * heads * levels * points * head_dim * 5


def relation_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Per box pair: C sine-embedding channels + C x heads projection MACs,
    C = 4 x num_pos_feats."""
    bs, heads, n, m = get_shape(outputs[0])
    channels = get_shape(inputs[2])[1]  # weight (heads, C)
    return bs * n * m * channels * (1 + heads)


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``baddbmm(input, batch1, batch2)``: the MACs of ``bmm(batch1,
    batch2)``."""
    return bmm_flop_jit(inputs[1:3], outputs)


#: traced op name -> flop handle, for ops mmengine's counter does not know
FLOP_HANDLES = {
    'vitdense::msda_forward': msda_flop_jit,
    'vitdense::relation_forward': relation_flop_jit,
    'aten::baddbmm': baddbmm_flop_jit,
}


def complexity_info(model: nn.Module, inputs: Any,
                    show_table: bool = False) -> Dict[str, Any]:
    """mmengine's ``get_model_complexity_info`` with :data:`FLOP_HANDLES`
    registered (that function builds its ``FlopAnalyzer`` internally, with
    no way to add handles).

    Returns a dict: ``flops``, ``params`` (ints), ``by_operator`` (Counter
    of FLOPs per op name, e.g. ``msda_forward``), ``unsupported``
    (Counter of ops counted as 0) and ``table`` (per-module table, '' unless
    ``show_table``).
    """
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**FLOP_HANDLES)
    return dict(
        flops=analyzer.total(),
        params=parameter_count(model)[''],
        by_operator=analyzer.by_operator(),
        unsupported=analyzer.unsupported_ops(),
        table=complexity_stats_table(analyzer) if show_table else '')


def build_detector(cfg: Config) -> nn.Module:
    """The config's model in eval mode; no weights are loaded."""
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return revert_sync_batchnorm(MODELS.build(cfg.model)).eval()


def dummy_batch(model: nn.Module, shape: Sequence[int]) -> dict:
    """One random ``H x W`` image through ``model.data_preprocessor``:
    ``inputs`` (1, 3, H', W') padded as configured, and ``data_samples``."""
    h, w = shape
    sample = DetDataSample(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                      scale_factor=(1.0, 1.0)))
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    return model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)


def detector_complexity(model: nn.Module, shape: Sequence[int],
                        show_table: bool = False) -> Dict[str, Any]:
    """:func:`complexity_info` of ``model``'s ``forward(mode='tensor')`` on
    a dummy image of ``shape`` (H, W); adds ``input_shape`` (after
    padding)."""
    data = dummy_batch(model, shape)
    forward = model.forward
    model.forward = partial(forward, data_samples=data['data_samples'])
    try:
        result = complexity_info(model, data['inputs'], show_table)
    finally:
        model.forward = forward
    result['input_shape'] = tuple(data['inputs'].shape[-2:])
    return result


def parse_args():
    parser = argparse.ArgumentParser(description='Get a detector flops')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[800, 1333],
        help='input image size: H W, or one number for a square')
    parser.add_argument(
        '--show-table',
        action='store_true',
        help='print the per-module parameters and flops')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, xxx=yyy pairs')
    args = parser.parse_args()
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    elif len(args.shape) != 2:
        parser.error('--shape takes H W or one number')
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    model = build_detector(cfg)
    result = detector_complexity(model, args.shape, args.show_table)

    split_line = '=' * 30
    if result['input_shape'] != tuple(args.shape):
        print(f'{split_line}\nUse size divisor set input shape '
              f'from {tuple(args.shape)} to {result["input_shape"]}')
    if args.show_table:
        print(result['table'])
    print(f'{split_line}\nFlops by operator:')
    for name, flops in result['by_operator'].most_common():
        print(f'  {name}: {_format_size(flops)}')
    print(f'{split_line}\nCompute type: dummy input of the given shape, '
          f'eval mode\nInput shape: {result["input_shape"]}\n'
          f'Flops: {_format_size(result["flops"])}\n'
          f'Params: {_format_size(result["params"])}\n{split_line}')
    print('Flops are for this input shape only: a detector\'s cost grows '
          'with the image size, so compare models at the same shape.')
    print('!!!Please be cautious if you use the results in papers. '
          'You may need to check if all ops are supported and verify '
          'that the flops computation is correct.')


if __name__ == '__main__':
    main()
