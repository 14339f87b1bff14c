"""Inference speed of a model on its test set, one image at a time.

    python tools/analysis_tools/benchmark.py CONFIG [CHECKPOINT] \
        [--repeat-num 1] [--max-iter 2000] [--log-interval 50] \
        [--num-warmup 5] [--fuse-conv-bn] [--device cpu] [--cfg-options ...]

mmdet's ``tools/analysis_tools/benchmark.py --task inference`` on any device.
mmdet's ``InferenceBenchmark`` (``mmdet/utils/benchmark.py``) cannot run
here: its module needs ``psutil`` at import time (which neither mmdet nor
vitdense requires), and it always loads a checkpoint, moves the model to
CUDA and calls ``torch.cuda.synchronize``. This is its measurement (batch 1,
no data-loader workers, the first ``--num-warmup`` images not timed, FPS
logged every ``--log-interval`` images, ``--repeat-num`` runs averaged) on
``--device``, with memory read from ``/proc`` (CPU) or the CUDA allocator.
Without a checkpoint the model keeps its random initialisation: the speed is
representative, the detections are not.
"""
import argparse
import time
from typing import Callable, Optional

import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner, load_checkpoint
from torch import nn

from vitdense.utils import register_all_modules
from vitdense.utils.benchmark import status_kb


def build_model(cfg: Config, checkpoint: Optional[str], fuse: bool,
                device: str) -> nn.Module:
    """The config's model on ``device`` in eval mode, with ``checkpoint``'s
    weights if given."""
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    if fuse:
        model = fuse_conv_bn(model)
    return model.to(device).eval()


def memory_report(device: str) -> str:
    if device.startswith('cuda'):
        return (f'cuda memory: '
                f'{torch.cuda.max_memory_allocated(device) // 2**20} MB')
    return (f'RSS: {status_kb("VmRSS") // 1024} MB, '
            f'peak RSS: {status_kb("VmHWM") // 1024} MB')


def run_once(model: nn.Module, data_loader, max_iter: int, log_interval: int,
             num_warmup: int, sync: Callable[[], None], device: str) -> float:
    """Images per second over the images after the warm-up ones (at most
    ``max_iter`` images in all)."""
    timed = 0.0
    done = 0
    for i, data in enumerate(data_loader):
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            model.test_step(data)
        sync()
        done = i + 1
        if i >= num_warmup:
            timed += time.perf_counter() - start
            if done % log_interval == 0:
                fps = (done - num_warmup) / timed
                print(f'Done image [{done:<3}/{max_iter}], '
                      f'fps: {fps:.2f} img/s, '
                      f'times per image: {1000 / fps:.1f} ms/img, '
                      f'{memory_report(device)}', flush=True)
        if done == max_iter:
            break
    if done <= num_warmup:
        raise SystemExit(f'only {done} images were run, not more than '
                         f'--num-warmup {num_warmup}; lower it')
    return (done - num_warmup) / timed


def parse_args():
    parser = argparse.ArgumentParser(description='Benchmark inference speed')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='checkpoint file (default: random initialisation)')
    parser.add_argument(
        '--repeat-num',
        type=int,
        default=1,
        help='number of repeat times of measurement for averaging the results')
    parser.add_argument(
        '--max-iter', type=int, default=2000, help='num of max iter')
    parser.add_argument(
        '--log-interval', type=int, default=50, help='interval of logging')
    parser.add_argument(
        '--num-warmup', type=int, default=5, help='Number of warmup')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='Whether to fuse conv and bn, this will slightly increase'
        'the inference speed')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu or cuda (default: cuda when available)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, xxx=yyy pairs')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))

    model = build_model(cfg, args.checkpoint, args.fuse_conv_bn, args.device)
    if not args.checkpoint:
        print('No checkpoint given: the model is randomly initialised '
              '(speed only; its detections mean nothing).')
    cfg.test_dataloader.update(
        num_workers=0, batch_size=1, persistent_workers=False)
    data_loader = Runner.build_dataloader(cfg.test_dataloader)
    sync = (torch.cuda.synchronize
            if args.device.startswith('cuda') else lambda: None)
    print(f'device: {args.device}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}; after build: '
          f'{memory_report(args.device)}')

    fps_list = [
        run_once(model, data_loader, args.max_iter, args.log_interval,
                 args.num_warmup, sync, args.device)
        for _ in range(args.repeat_num)
    ]
    print('============== Done ==================')
    avg_fps = sum(fps_list) / len(fps_list)
    if len(fps_list) > 1:
        times = [1000 / fps for fps in fps_list]
        print(f'Overall fps: {[round(f, 2) for f in fps_list]}'
              f'[{avg_fps:.2f}] img/s, times per image: '
              f'{[round(t, 1) for t in times]}'
              f'[{sum(times) / len(times):.1f}] ms/img')
    else:
        print(f'Overall fps: {avg_fps:.2f} img/s, '
              f'times per image: {1000 / avg_fps:.1f} ms/img')
    print(memory_report(args.device))


if __name__ == '__main__':
    main()
