"""Test a model: ``python tools/test.py CONFIG CHECKPOINT [options]``.

Same flags as mmdet's ``tools/test.py``. ``--show-dir`` writes prediction
pictures with the config's visualizer (mmdet's ``DetLocalVisualizer`` for
detection, mmseg's ``SegLocalVisualizer`` for segmentation). A checkpoint
whose weights do not fit the config's model (missing, unexpected or
differently shaped tensors) is an error unless ``--allow-partial-load``.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from vitdense.utils import (configure_cpu_distributed, preload_tcmalloc,
                            register_all_modules)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test (and eval) a vitdense model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='evaluate even if the checkpoint does not fit the model '
        '(missing, unexpected or differently shaped tensors are then only '
        'warned about, as in mmdet); by default that is an error')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args):
    default_hooks = cfg.get('default_hooks', {})
    if 'visualization' not in default_hooks:
        raise RuntimeError(
            '`--show` and `--show-dir` need a `visualization` hook in '
            '`default_hooks` (e.g. mmdet `DetVisualizationHook` or mmseg '
            '`SegVisualizationHook`); the config has none.')
    hook = default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if 'Seg' in str(hook.get('type', '')):
            # mmseg's hook saves through the visualizer's save_dir, and in
            # testing too only every `interval` (50) images: draw them all,
            # as mmdet's does.
            cfg.visualizer['save_dir'] = args.show_dir
            hook['interval'] = 1
        else:
            hook['test_out_dir'] = args.show_dir
    return cfg


def main():
    args = parse_args()
    preload_tcmalloc()  # re-run under tcmalloc (faster CPU inference)
    register_all_modules(init_default_scope=False)

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    configure_cpu_distributed(cfg)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    if not args.allow_partial_load:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='vitdense.CheckpointCheckHook', exact_keys=True)]

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise RuntimeError('--tta needs `tta_model` and `tta_pipeline` '
                               'in the config.')
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        test_data_cfg.pipeline = cfg.tta_pipeline

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must name a .pkl or .pickle file.')
        scope = cfg.get('default_scope', None)
        if scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        else:
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))

    runner.test()


if __name__ == '__main__':
    main()
