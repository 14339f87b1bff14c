"""Training step time, peak memory and inference speed of DINO,
"DINO + relation" and Relation-DETR with the same backbone, input and queries.

The last line reports what the relation prior alone costs: the step time
of "DINO + relation" relative to DINO.

One definition, three models: Relation-DETR is
``configs/relation_detr/relation-detr_r50_8xb2-12e_coco.py`` (with its hybrid
branch), DINO is mmdet's ``dino/dino-4scale_r50_8xb2-12e_coco.py`` as
:class:`AnyWidthDINO` (on vitdense's deformable attention, like the others)
and "DINO + relation" is that same DINO config with ``type='RelationDINO'``.
All three then get the same backbone, query counts and layer count. The
defaults keep the official transformer (width 256, 6 + 6 layers, 900
queries, 100 denoising queries, 1500 hybrid queries) and shrink the rest so
a 2-core CPU finishes in minutes: mmdet's ResNet-18 (stages 2-4, as the R50
configs), 320x320 input (2125 encoder tokens, enough for the 1500 hybrid
proposals; 256x256 gives 1360), batch 2, 10 random ground-truth boxes per
image.

A training step is ``model.train_step`` with the config's optimizer wrapper
(data preprocessing, forward, losses, backward, gradient clipping, AdamW
step). The models take turns step by step, so a busy machine slows all three
alike; times are medians. The process first re-runs itself under tcmalloc
(:func:`vitdense.utils.preload_tcmalloc`), as ``tools/train.py`` does, so
CPU steps are timed as training runs them (``VITDENSE_TCMALLOC=0`` times
glibc's allocator, which page-faults every tensor over 32 MiB anew). Peak
memory is what one extra, untimed
training step adds to what is resident before it (weights, optimizer
state): on CPU the rise of the resident-set high-water mark after returning
freed memory to the system (Linux, as
``benchmark_backbone.py``), on CUDA
``max_memory_allocated`` minus the allocation before the step. Inference is
``model.test_step`` on the same batch (post-processing included). Page
faults/step are the process's minor page faults during a timed step
(``getrusage``; memory the kernel maps in and zeroes).

Example::

    python tools/analysis_tools/benchmark_detr.py --threads 2
    python tools/analysis_tools/benchmark_detr.py --device cuda --size 800 \
        --iters 20
"""
import argparse
import copy
import math
import os.path as osp
import statistics
import time
from functools import partial
from typing import Callable, Dict, List, Tuple

try:
    import resource
except ImportError:  # not Unix
    resource = None

import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from mmengine.structures import InstanceData

from vitdense.utils import preload_tcmalloc, register_all_modules
from vitdense.utils.benchmark import (add_device_args, reset_peak_rss,
                                      setup_device, status_kb)


DINO_CONFIG = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
RELATION_DETR_CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'relation_detr', 'relation-detr_r50_8xb2-12e_coco.py')
#: channels of the configs' ResNet stages 2-4 at depth 18
BACKBONE_CHANNELS = [128, 256, 512]
#: strides of the 4 feature levels (3 backbone stages + the neck's extra)
STRIDES = (8, 16, 32, 64)
NUM_CLASSES = 80


def model_configs(args) -> Dict[str, Config]:
    """Name -> config of the three models, with the shared settings."""
    dino = get_config(DINO_CONFIG)
    dino_relation = copy.deepcopy(dino)
    dino.model.type = 'AnyWidthDINO'
    dino_relation.model.type = 'RelationDINO'
    relation_detr = Config.fromfile(RELATION_DETR_CONFIG)
    relation_detr.model.num_hybrid_queries = args.hybrid_queries
    configs = {
        'DINO': dino,
        'DINO + relation': dino_relation,
        'Relation-DETR': relation_detr
    }
    for cfg in configs.values():
        model = cfg.model
        # the configs' ResNet-50 settings at depth 18, no ImageNet download
        model.backbone.update(depth=18, init_cfg=None)
        model.neck.in_channels = BACKBONE_CHANNELS
        model.num_queries = args.queries
        model.dn_cfg.group_cfg.num_dn_queries = args.dn_queries
        model.encoder.num_layers = model.decoder.num_layers = args.layers
    return configs


def random_batch(batch: int, size: int, boxes: int, seed: int) -> dict:
    """``batch`` random ``size x size`` images, each with ``boxes`` random
    ground-truth boxes and labels, as a data loader yields them."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                          generator=gen))
        centre = torch.rand(boxes, 2, generator=gen) * size
        half = (torch.rand(boxes, 2, generator=gen) * 0.2 + 0.02) * size
        xyxy = torch.cat([centre - half, centre + half], 1).clamp(0, size)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=xyxy,
            labels=torch.randint(0, NUM_CLASSES, (boxes, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


class Benchmarked:
    """A model, its optimizer wrapper and its per-call measurements."""

    def __init__(self, cfg: Config, device: str) -> None:
        self.model = MODELS.build(cfg.model)
        self.model.init_weights()
        self.model.to(device)
        self.optim_wrapper: OptimWrapper = build_optim_wrapper(
            self.model, cfg.optim_wrapper)
        self.step_ms: List[float] = []
        self.step_faults: List[float] = []
        self.step_mb = float('nan')
        self.test_ms: List[float] = []

    def train_step(self, data: dict) -> None:
        self.model.train()
        self.model.train_step(data, self.optim_wrapper)

    def test_step(self, data: dict) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model.test_step(data)


def _minor_faults() -> float:
    """Minor page faults of this process so far (NaN where unknown)."""
    if resource is None:
        return float('nan')
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def timed(fn: Callable[[], None], device: str) -> Tuple[float, float]:
    """Run ``fn`` once: (milliseconds, minor page faults it caused)."""
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
    faults = _minor_faults()
    start = time.perf_counter()
    fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3, _minor_faults() - faults


def peak_mb(fn: Callable[[], None], device: str) -> float:
    """Run ``fn`` once: MB it added at its peak (NaN if unmeasurable)."""
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if not reset_peak_rss():
        fn()
        return float('nan')
    base = status_kb('VmRSS')
    fn()
    return (status_kb('VmHWM') - base) / 1024


def run(models: Dict[str, Benchmarked], data: dict, iters: int, warmup: int,
        device: str) -> None:
    """Timed training steps, one step for peak memory, then inference; the
    models take turns."""
    for i in range(warmup + iters):
        for entry in models.values():
            ms, faults = timed(partial(entry.train_step, data), device)
            if i >= warmup:
                entry.step_ms.append(ms)
                entry.step_faults.append(faults)
    for entry in models.values():
        entry.step_mb = peak_mb(partial(entry.train_step, data), device)
    for i in range(warmup + iters):
        for entry in models.values():
            ms, _ = timed(partial(entry.test_step, data), device)
            if i >= warmup:
                entry.test_ms.append(ms)


def num_tokens(size: int) -> int:
    """Encoder tokens of a ``size x size`` input over :data:`STRIDES`."""
    return sum(math.ceil(size / stride)**2 for stride in STRIDES)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--queries', type=int, default=900,
                        help='matching queries of every model')
    parser.add_argument('--dn-queries', type=int, default=100,
                        help='denoising queries of every model')
    parser.add_argument('--hybrid-queries', type=int, default=1500,
                        help='hybrid (one-to-many) queries of Relation-DETR')
    parser.add_argument('--layers', type=int, default=6,
                        help='encoder layers and decoder layers')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=320,
                        help='square input side in pixels')
    parser.add_argument('--boxes', type=int, default=10,
                        help='random ground-truth boxes per image')
    parser.add_argument('--iters', type=int, default=3,
                        help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed steps per model first')
    add_device_args(parser)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    tokens = num_tokens(args.size)
    if max(args.queries, args.hybrid_queries) > tokens:
        parser.error(f'a {args.size}x{args.size} input gives {tokens} '
                     'encoder tokens, fewer than the queries selected from '
                     'them; raise --size or lower --queries/--hybrid-queries')
    if args.iters < 1:
        parser.error('--iters must be at least 1')
    return args


def main() -> None:
    args = parse_args()
    tcmalloc = preload_tcmalloc()
    setup_device(args)
    # the current logger: keeps the per-parameter reports of init_weights
    # and of the optimizer constructor (frozen stem) quiet
    MMLogger.get_instance('benchmark_detr', log_level='ERROR')
    register_all_modules(init_default_scope=False)
    configs = model_configs(args)
    init_default_scope(configs['Relation-DETR'].get('default_scope', 'mmdet'))
    torch.manual_seed(args.seed)
    models = {
        name: Benchmarked(cfg, args.device)
        for name, cfg in configs.items()
    }
    data = random_batch(args.batch, args.size, args.boxes, args.seed)

    print(f'device: {args.device}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}, fp32; ResNet-18, batch {args.batch} '
          f'x {args.size}x{args.size}, {args.boxes} boxes/image; width 256, '
          f'{args.layers} + {args.layers} layers, {args.queries} queries, '
          f'{args.dn_queries} denoising, {args.hybrid_queries} hybrid '
          f'(Relation-DETR); median of {args.iters} steps after '
          f'{args.warmup} warm-up, models taking turns; allocator '
          f'{"tcmalloc" if tcmalloc else "glibc"}\n')
    run(models, data, args.iters, args.warmup, args.device)

    mem = 'peak MB/step (RSS rise)' if args.device == 'cpu' else \
        'peak MB/step (allocated)'
    header = ['model', 'params (M)', 'train ms/step', 'vs DINO', mem,
              'page faults/step', 'inference img/s']
    print('| ' + ' | '.join(header) + ' |')
    print('|---|' + '---:|' * (len(header) - 1))
    dino_ms = statistics.median(models['DINO'].step_ms)
    step_ms = {}
    for name, entry in models.items():
        step_ms[name] = statistics.median(entry.step_ms)
        params = sum(p.numel() for p in entry.model.parameters()) / 1e6
        img_s = args.batch * 1e3 / statistics.median(entry.test_ms)
        row = [
            name, f'{params:.1f}', f'{step_ms[name]:.0f}',
            f'{step_ms[name] / dino_ms:.2f}x', f'{entry.step_mb:.0f}',
            f'{statistics.median(entry.step_faults):.0f}',
            f'{img_s:.2f}'
        ]
        print('| ' + ' | '.join(row) + ' |', flush=True)

    overhead = step_ms['DINO + relation'] / dino_ms - 1
    print(f'\n"DINO + relation" step time is {overhead * 100:+.1f}% vs DINO '
          f'at {args.queries} queries')


if __name__ == '__main__':
    main()
