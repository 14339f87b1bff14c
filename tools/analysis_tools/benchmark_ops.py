"""Benchmark vitdense's ops against mmcv's and the naive PyTorch paths.

Prints markdown tables (ms per call, median of ``--repeats`` runs after
``--warmup``) for multi-scale deformable attention at the standard shapes
(8 heads x 32 dims, 4 levels from an 800x1333 image at strides 8-64, 4
points) against mmcv's op measured in the same run (its grid_sample path on
CPU, its CUDA kernel on GPU), and for the Relation-DETR relation bias
against the naive reference (time and peak memory).

Sampling locations are realistic rather than uniform: decoder queries sample
inside random reference boxes (mmdet's 4-d reference-point formula),
encoder queries around their own pixel (offsets of a few pixels).

On CUDA, without mmcv installed, ``--mmcv-sdist`` compiles mmcv 2.1.0's
MSDA kernel from its source distribution as the baseline
(``tools/device/mmcv_msda.py``), and a second table shows vitdense's
variants at fp32 as the reference: bf16 (time and error relative to fp32),
the deterministic backward and the fused softmax.

Example::

    OMP_NUM_THREADS=2 python tools/analysis_tools/benchmark_ops.py
    VITDENSE_CUDA_OPS=1 python tools/analysis_tools/benchmark_ops.py \
        --device cuda --mmcv-sdist .whl/mmcv-2.1.0.tar.gz
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Tuple

import torch

from vitdense.ops import (box_relation_bias, box_relation_bias_pytorch,
                          info, multi_scale_deformable_attn)

LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]  # 800x1333, strides 8-64
HEADS, DIMS, POINTS = 8, 32, 4
NUM_TOKENS = sum(h * w for h, w in LEVELS)  # 22223
MSDA_CASES = [('decoder bs2 / 300 q', 2, 300, 'decoder'),
              ('decoder bs8 / 900 q', 8, 900, 'decoder'),
              (f'encoder bs1 / {NUM_TOKENS} q', 1, NUM_TOKENS, 'encoder')]
RELATION_SIZES = [300, 900, 1200]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument(
        '--ops', nargs='+', default=['msda', 'relation'],
        choices=['msda', 'relation'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--mmcv-sdist',
        help='mmcv-2.1.0.tar.gz: build the CUDA baseline from it')
    parser.add_argument(
        '--mmcv-build', default='build/mmcv_msda',
        help='build folder of the --mmcv-sdist baseline')
    parser.add_argument(
        '--peak-child', nargs=2, metavar=('OP', 'N'), help=argparse.SUPPRESS)
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int,
              warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def msda_inputs(batch: int, num_queries: int, kind: str,
                device: torch.device) -> Tuple[torch.Tensor, ...]:
    shapes = torch.tensor(LEVELS, dtype=torch.long, device=device)
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(batch, NUM_TOKENS, HEADS, DIMS, device=device)
    offsets = torch.randn(
        batch, num_queries, HEADS, len(LEVELS), POINTS, 2, device=device)
    if kind == 'decoder':
        boxes = torch.rand(batch, num_queries, 1, 1, 1, 4, device=device)
        boxes[..., 2:] = boxes[..., 2:] * 0.38 + 0.02
        locations = boxes[..., :2] + offsets / POINTS * boxes[..., 2:] * 0.5
    else:
        centres = torch.cat([
            torch.stack(
                torch.meshgrid(
                    (torch.arange(w, device=device) + 0.5) / w,
                    (torch.arange(h, device=device) + 0.5) / h,
                    indexing='xy'), -1).reshape(-1, 2) for h, w in LEVELS
        ])[:num_queries]
        normalizer = shapes.flip(-1).float()[None, None, None, :, None, :]
        locations = (centres[None, :, None, None, None, :] +
                     2 * offsets / normalizer)
    weights = torch.randn(
        batch, num_queries, HEADS, len(LEVELS) * POINTS,
        device=device).softmax(-1).view(batch, num_queries, HEADS,
                                        len(LEVELS), POINTS)
    return value, shapes, start, locations.contiguous(), weights


def mmcv_msda(device: torch.device, args) -> Callable:
    """mmcv's op as its module runs it on ``device``: from mmcv, or on CUDA
    built from ``--mmcv-sdist``."""
    if device.type == 'cuda' and args.mmcv_sdist:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                        'device'))
        import mmcv_msda as baseline
        return baseline.mmcv_msda_function(
            baseline.build(args.mmcv_sdist, args.mmcv_build))
    from mmcv.ops import multi_scale_deform_attn as mmcv_msda_module
    if device.type == 'cuda':
        return lambda v, s, i, loc, w: (
            mmcv_msda_module.MultiScaleDeformableAttnFunction.apply(
                v, s, i, loc, w, 64))
    return lambda v, s, i, loc, w: (
        mmcv_msda_module.multi_scale_deformable_attn_pytorch(v, s, loc, w))


def time_fwd_bwd(op: Callable, inputs: Tuple[torch.Tensor, ...],
                 device: torch.device, repeats: int,
                 warmup: int) -> Tuple[float, float, torch.Tensor]:
    value, shapes, start, locations, weights = inputs
    with torch.no_grad():
        output = op(value, shapes, start, locations, weights)
        fwd = median_ms(lambda: op(value, shapes, start, locations, weights),
                        device, repeats, warmup)
    leaves = [t.detach().requires_grad_() for t in (value, locations,
                                                    weights)]
    grad = torch.randn_like(output)

    def step():
        out = op(leaves[0], shapes, start, leaves[1], leaves[2])
        out.backward(grad)
        for leaf in leaves:
            leaf.grad = None

    return fwd, median_ms(step, device, repeats, warmup), output


def bench_msda(args, device: torch.device) -> None:
    baseline = mmcv_msda(device, args)
    name = 'grid_sample path' if device.type == 'cpu' else 'CUDA kernel'
    rows = [
        f'| shape | vitdense fwd | mmcv fwd ({name}) | speed-up | '
        f'vitdense fwd+bwd | mmcv fwd+bwd | speed-up | max abs diff |',
        '|---|---:|---:|---:|---:|---:|---:|---:|'
    ]
    print('\n'.join(rows), flush=True)
    for title, batch, queries, kind in MSDA_CASES:
        torch.manual_seed(args.seed)
        inputs = msda_inputs(batch, queries, kind, device)
        ours_f, ours_fb, ours_out = time_fwd_bwd(
            multi_scale_deformable_attn, inputs, device, args.repeats,
            args.warmup)
        ref_f, ref_fb, ref_out = time_fwd_bwd(baseline, inputs, device,
                                              args.repeats, args.warmup)
        diff = (ours_out - ref_out).abs().max().item()
        rows.append(f'| {title} | {ours_f:.3f} | {ref_f:.3f} | '
                    f'{ref_f / ours_f:.2f}x | {ours_fb:.3f} | {ref_fb:.3f} | '
                    f'{ref_fb / ours_fb:.2f}x | {diff:.1e} |')
        print(rows[-1], flush=True)


def fused_softmax_op(value, shapes, start, locations, logits):
    return multi_scale_deformable_attn(
        value, shapes, start, locations, logits, softmax=True)


def bench_msda_variants(args, device: torch.device) -> None:
    """bf16 (error relative to the largest output, against fp32 on the
    same bf16-rounded inputs), deterministic backward and fused softmax,
    with fp32 as the reference."""
    rows = [
        '| shape | fp32 fwd+bwd | bf16 fwd+bwd | bf16 max rel err | '
        'deterministic fwd+bwd | fused softmax fwd+bwd |',
        '|---|---:|---:|---:|---:|---:|'
    ]
    print('\n'.join(rows), flush=True)
    for title, batch, queries, kind in MSDA_CASES:
        torch.manual_seed(args.seed)
        inputs = msda_inputs(batch, queries, kind, device)
        timing = (device, args.repeats, args.warmup)
        _, fp32, _ = time_fwd_bwd(multi_scale_deformable_attn, inputs,
                                  *timing)
        low = tuple(t.bfloat16() if t.is_floating_point() else t
                    for t in inputs)
        _, bf16, out16 = time_fwd_bwd(multi_scale_deformable_attn, low,
                                      *timing)
        # the kernel's own error: fp32 on the same bf16-rounded inputs
        with torch.no_grad():
            exact = multi_scale_deformable_attn(
                *(t.float() if t.is_floating_point() else t for t in low))
        error = ((out16.float() - exact).abs().max() /
                 exact.abs().max()).item()
        torch.use_deterministic_algorithms(True)
        try:
            _, determ, _ = time_fwd_bwd(multi_scale_deformable_attn, inputs,
                                        *timing)
        finally:
            torch.use_deterministic_algorithms(False)
        logits = inputs[:4] + (inputs[4].log(), )
        _, fused, _ = time_fwd_bwd(fused_softmax_op, logits, *timing)
        rows.append(f'| {title} | {fp32:.2f} | {bf16:.2f} | {error:.1e} | '
                    f'{determ:.2f} | {fused:.2f} |')
        print(rows[-1], flush=True)


def relation_inputs(n: int, device: torch.device, seed: int):
    torch.manual_seed(seed)
    boxes = torch.rand(2, n, 4, device=device)
    boxes[..., 2:] = boxes[..., 2:] * 0.3 + 0.01
    tgt = (boxes + 0.01 * torch.randn_like(boxes)).clamp(0.005, 1)
    conv = torch.nn.Conv2d(64, 8, 1).to(device)
    return boxes, tgt, conv


RELATION_OPS = {
    'fused': box_relation_bias,
    'naive': box_relation_bias_pytorch
}


def relation_train_step(op: Callable, boxes: torch.Tensor, tgt: torch.Tensor,
                        conv: torch.nn.Conv2d) -> None:
    op(boxes, tgt, conv.weight, conv.bias).sum().backward()
    conv.weight.grad = conv.bias.grad = None


def _rss_bytes(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def relation_peak_memory(label: str, n: int, device: torch.device,
                         seed: int) -> int:
    """Peak extra memory of one forward+backward: CUDA allocator stats on
    GPU; on CPU the peak RSS growth (Linux) of a fresh child process, so
    that no memory freed earlier is reused."""
    if device.type == 'cpu':
        result = subprocess.run([
            sys.executable, __file__, '--peak-child', label,
            str(n), '--seed',
            str(seed)
        ],
                                check=True,
                                capture_output=True,
                                text=True)
        return int(result.stdout.split()[-1])
    boxes, tgt, conv = relation_inputs(n, device, seed)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    relation_train_step(RELATION_OPS[label], boxes, tgt, conv)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def peak_child(label: str, n: int, seed: int) -> None:
    boxes, tgt, conv = relation_inputs(n, torch.device('cpu'), seed)
    base = _rss_bytes('VmRSS:')
    relation_train_step(RELATION_OPS[label], boxes, tgt, conv)
    print(_rss_bytes('VmHWM:') - base)


def bench_relation(args, device: torch.device) -> None:
    rows = [
        '| N = M (bs 2, 8 heads) | fused fwd | naive fwd | fused fwd+bwd | '
        'naive fwd+bwd | fused peak MiB | naive peak MiB | memory ratio | '
        'max abs diff |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
    ]
    print('\n'.join(rows), flush=True)
    for n in RELATION_SIZES:
        boxes, tgt, conv = relation_inputs(n, device, args.seed)
        results: Dict[str, Tuple[float, float, int, torch.Tensor]] = {}
        for label, op in RELATION_OPS.items():
            memory = relation_peak_memory(label, n, device, args.seed)

            def forward():
                with torch.no_grad():
                    return op(boxes, tgt, conv.weight, conv.bias)

            output = forward()
            fwd = median_ms(forward, device, args.repeats, args.warmup)
            fwd_bwd = median_ms(
                lambda: relation_train_step(op, boxes, tgt, conv), device,
                args.repeats, args.warmup)
            results[label] = (fwd, fwd_bwd, memory, output)
        fused, naive = results['fused'], results['naive']
        diff = (fused[3] - naive[3]).abs().max().item()
        rows.append(f'| {n} | {fused[0]:.1f} | {naive[0]:.1f} | '
                    f'{fused[1]:.1f} | {naive[1]:.1f} | '
                    f'{fused[2] / 2**20:.0f} | {naive[2] / 2**20:.0f} | '
                    f'{naive[2] / fused[2]:.1f}x | {diff:.1e} |')
        print(rows[-1], flush=True)


def main():
    args = parse_args()
    if args.peak_child:
        peak_child(args.peak_child[0], int(args.peak_child[1]), args.seed)
        return
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no GPU visible')
    report = info()
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, '
          f'device {device}, vitdense.ops {report}')
    if device.type == 'cuda':
        print(f'GPU {torch.cuda.get_device_name(device)}, '
              f'CUDA {torch.version.cuda}')
    print(f'median of {args.repeats} runs after {args.warmup} warm-up, '
          'ms per call\n')
    if 'msda' in args.ops:
        bench_msda(args, device)
        print()
        if device.type == 'cuda':
            bench_msda_variants(args, device)
            print()
    if 'relation' in args.ops:
        bench_relation(args, device)


if __name__ == '__main__':
    main()
