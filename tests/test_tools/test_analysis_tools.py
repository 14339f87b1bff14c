"""browse_dataset draws ground truth; analyze_logs draws curves; get_flops
counts vitdense's ops; benchmark and benchmark_detr time the detectors."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ._helpers import TINY_CONFIG, data_options, run_tool


@pytest.mark.slow
def test_browse_dataset_draws_ground_truth_boxes(coco_shapes_root, tmp_path):
    out = str(tmp_path / 'gt')
    run_tool(['tools/misc/browse_dataset.py', TINY_CONFIG, '--output-dir',
              out, '--num', '3', '--cfg-options'] +
             data_options(coco_shapes_root))
    pictures = sorted(p for p in __import__('os').listdir(out))
    assert len(pictures) == 3
    drawn = np.array(Image.open(osp.join(out, pictures[0])))
    assert drawn.shape[2] == 3 and drawn.shape[:2] == (64, 64)


def test_analyze_logs_plots_every_key(tmp_path):
    from tools.analysis_tools.analyze_logs import load_scalars, plot_curve
    log = tmp_path / 'scalars.json'
    log.write_text('\n'.join(json.dumps({'loss': 2.0 / (i + 1), 'step': i,
                                         'lr': 1e-4})
                             for i in range(1, 11)) +
                   '\n' + json.dumps({'coco/bbox_mAP': 0.3, 'step': 10}))
    series = load_scalars(str(log))
    assert [s for s, _ in series['loss']] == list(range(1, 11))
    out = plot_curve([str(log)], ['loss', 'coco/bbox_mAP'],
                     str(tmp_path / 'curves.png'))
    image = np.array(Image.open(out))
    assert image.shape[0] > 400  # two panels
    with pytest.raises(KeyError, match='available keys'):
        plot_curve([str(log)], ['nonexistent'], str(tmp_path / 'x.png'))


NANO_RELATION_DETR = osp.join('configs', 'relation_detr',
                              'relation-detr_swin-nano_1xb8-shapes.py')


class _Call(nn.Module):
    """A module whose forward is ``fn``, for tracing a bare function."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def test_flop_handles_extend_the_reference_counts():
    from mmengine.analysis import FlopAnalyzer

    from tools.analysis_tools.get_flops import FLOP_HANDLES
    from vitdense.ops import (box_relation_bias, box_relation_bias_pytorch,
                              multi_scale_deformable_attn,
                              multi_scale_deformable_attn_pytorch)

    def count(fn, inputs, handles=True):
        analyzer = FlopAnalyzer(_Call(fn), inputs)
        if handles:
            analyzer.set_op_handle(**FLOP_HANDLES)
        return analyzer.unsupported_ops_warnings(False).total()

    # bs 2, 10 queries, 4 heads x 16 dims, 2 levels x 3 points
    msda = (torch.randn(2, 80, 4, 16), torch.tensor([[8, 8], [4, 4]]),
            torch.tensor([0, 64]), torch.rand(2, 10, 4, 2, 3, 2),
            torch.rand(2, 10, 4, 2, 3))
    samples = 2 * 10 * 4 * 2 * 3 * 16
    # mmengine counts the reference's grid_sample as 4 corners per sample
    assert count(lambda v, s, i, loc, w:
                 multi_scale_deformable_attn_pytorch(v, s, loc, w),
                 msda) == 4 * samples
    # + the attention weighting
    assert count(multi_scale_deformable_attn, msda) == 5 * samples
    assert count(multi_scale_deformable_attn, msda, handles=False) == 0

    # bs 2, 6 x 5 box pairs, 64 embedding channels, 8 heads
    boxes = (torch.rand(2, 6, 4), torch.rand(2, 5, 4),
             torch.randn(8, 64, 1, 1), torch.randn(8))
    pairs = 2 * 6 * 5
    # the naive reference: only its 1x1 conv is counted
    assert count(box_relation_bias_pytorch, boxes) == pairs * 64 * 8
    # + one per sine-embedding channel
    assert count(box_relation_bias, boxes) == pairs * 64 * 9


def test_get_flops_counts_msda_and_relation_of_relation_detr(repo_root):
    from mmengine.config import Config

    from tools.analysis_tools.get_flops import (build_detector,
                                                detector_complexity)
    model = build_detector(
        Config.fromfile(osp.join(repo_root, NANO_RELATION_DETR)))
    result = detector_complexity(model, (128, 128))
    ops = result['by_operator']
    # 8 heads x 16 dims, 4 levels x 4 points; 3 encoder layers over
    # 16^2 + 8^2 + 4^2 + 2^2 = 340 tokens, 3 decoder layers over 100 queries
    assert ops['msda_forward'] == \
        (3 * 340 + 3 * 100) * 8 * 16 * 4 * 4 * 5
    # the bias between the 100 queries before decoder layers 2 and 3
    assert ops['relation_forward'] == 2 * 100 * 100 * 64 * 9
    # q.k^T of the self-attention that gets the bias as a float mask
    assert ops['baddbmm'] == 2 * 8 * 100 * 16 * 100
    assert not [op for op in result['unsupported'] if 'vitdense' in op]
    assert result['flops'] == sum(ops.values())
    assert result['params'] == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_get_flops_prints_flops_and_params():
    out = run_tool(['tools/analysis_tools/get_flops.py', NANO_RELATION_DETR,
                    '--shape', '128', '128']).stdout
    flops = re.search(r'^Flops: ([0-9.]+)([KMG]?)$', out, re.M)
    assert flops and float(flops.group(1)) > 0
    assert re.search(r'^Params: [0-9.]+M$', out, re.M)
    assert '  msda_forward:' in out
    assert '  relation_forward:' in out
    assert 'Input shape: (128, 128)' in out


@pytest.mark.slow
def test_benchmark_prints_fps_of_a_random_model(coco_shapes_root):
    out = run_tool(['tools/analysis_tools/benchmark.py', NANO_RELATION_DETR,
                    '--max-iter', '3', '--num-warmup', '1',
                    '--log-interval', '1', '--device', 'cpu',
                    '--cfg-options'] + data_options(coco_shapes_root)).stdout
    assert 'randomly initialised' in out
    assert len(re.findall(r'^Done image \[', out, re.M)) == 2  # after warm-up
    fps = re.search(r'^Overall fps: ([0-9.]+) img/s', out, re.M)
    assert fps and float(fps.group(1)) > 0


@pytest.mark.slow
def test_benchmark_detr_compares_three_models():
    out = run_tool(['tools/analysis_tools/benchmark_detr.py', '--queries',
                    '20', '--dn-queries', '10', '--hybrid-queries', '30',
                    '--layers', '1', '--size', '64', '--batch', '1',
                    '--boxes', '3', '--iters', '1', '--warmup', '0',
                    '--threads', '1']).stdout
    rows = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip('|').split('|')]
                      for line in out.splitlines() if line.startswith('| '))
    }
    assert set(rows) == {'model', 'DINO', 'DINO + relation', 'Relation-DETR'}
    assert rows['DINO'][2] == '1.00x'
    for name in ('DINO', 'DINO + relation', 'Relation-DETR'):
        params, step_ms, ratio, peak_mb, faults, img_s = rows[name]
        assert float(params) > 0 and float(step_ms) > 0
        assert float(ratio.rstrip('x')) > 0
        assert float(peak_mb) >= 0 and float(img_s) > 0
        assert float(faults) >= 0
    assert re.search(r'allocator (tcmalloc|glibc)', out)
    assert re.search(r'"DINO \+ relation" step time is [+-][0-9.]+% vs DINO '
                     r'at [0-9]+ queries', out)


def test_unified_space_name_stats_flag_a_collapsed_space():
    from types import SimpleNamespace

    from tools.analysis_tools.unified_space import name_stats
    names = ('circle', 'square', 'triangle')
    spread = SimpleNamespace(class_embeddings=lambda task: torch.eye(3, 8),
                             class_names=lambda task: names)
    stats = name_stats(spread, 'detection')
    assert stats['names'] == list(names)
    assert stats['mean_cos'] == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(stats['cosines'], torch.eye(3))
    one = torch.tensor([[1.0, 2.0, 0.0]])
    collapsed = SimpleNamespace(
        class_embeddings=lambda task: torch.cat([one, 3 * one, 0.5 * one]),
        class_names=lambda task: names)
    stats = name_stats(collapsed, 'detection')
    assert stats['mean_cos'] == pytest.approx(1.0, abs=1e-6)
    assert stats['max_cos'] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_unified_space_cli_reports_every_task_and_draws(imagenet_shapes_root,
                                                        tmp_path):
    root = imagenet_shapes_root.rstrip('/') + '/'
    out = tmp_path / 'space'
    result = run_tool([
        'tools/analysis_tools/unified_space.py',
        'configs/uni_perceiver_v2/uni-perceiver-v2_swin-nano_1xb8-shapes.py',
        '--num-batches', '1', '--out-dir', str(out), '--cfg-options',
        f'model.task_classes.classification={root}meta/classes.txt',
        f'model.text_encoder.tokenizer={root}meta/bpe',
        'val_cfg.extra_tasks.classification.dataloader.dataset.data_root='
        f'{root}', 'val_cfg.extra_tasks.classification.dataloader.batch_size=4'
    ])
    lines = result.stdout
    found = re.search(r'detection: 3 class names, pairwise cosine mean '
                      r'(-?[\d.]+), max (-?[\d.]+)', lines)
    assert found and -1 <= float(found[1]) <= float(found[2]) <= 1, lines
    assert 'classification: 10 class names' in lines
    found = re.search(r'classification images \(4\): pairwise cosine mean '
                      r'(-?[\d.]+), logit std over classes ([\d.]+), top-1 '
                      r'([\d.]+)', lines)
    assert found and 0 <= float(found[3]) <= 100, lines
    for task in ('detection', 'classification'):
        image = np.array(Image.open(out / f'{task}_names.png'))
        assert image.ndim == 3 and min(image.shape[:2]) > 200
    bad = run_tool(['tools/analysis_tools/unified_space.py',
                    'configs/demo/dino_swin-nano_1xb8-shapes.py'],
                   check=False)
    assert bad.returncode != 0
    assert 'builds a AnyWidthDINO, not a UniPerceiverV2' in bad.stderr
