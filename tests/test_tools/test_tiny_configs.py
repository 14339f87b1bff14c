"""Every shipped tiny config trains 2 iterations with tools/train.py and is
tested with tools/test.py on the checkpoint, drawing its predictions
(``--show-dir``); huge learning rates stop with vitdense's divergence
message and leave no non-finite checkpoint."""
import glob
import os.path as osp
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from mmengine.config import Config

from ._helpers import (REPO_ROOT, TINY_CONFIG, data_options, run_tool,
                       tool_env)

TINY_PATTERNS = ('configs/**/*nano*shapes*.py', 'configs/demo/*.py',
                 'projects/*/configs/*.py')
TINY_CONFIGS = sorted({
    osp.relpath(path, REPO_ROOT)
    for pattern in TINY_PATTERNS
    for path in glob.glob(osp.join(REPO_ROOT, pattern), recursive=True)
})
SEG_CONFIG = 'configs/vit_comer/upernet_vit-comer-nano_1xb2-shapes.py'


def _is_segmentation(cfg: Config) -> bool:
    return cfg.test_evaluator.type.endswith('IoUMetric')


def _is_kitti(cfg: Config) -> bool:
    return cfg.test_evaluator.type == 'KittiMetric'


def _is_panoptic(cfg: Config) -> bool:
    return cfg.test_evaluator.type.endswith('CocoPanopticMetric')


def _panoptic_data_options(coco_root: str) -> list:
    root = coco_root.rstrip('/') + '/'
    return [
        f'{split}_dataloader.dataset.data_root={root}'
        for split in ('train', 'val', 'test')
    ] + [
        f'{split}_evaluator.{key}={root}annotations/panoptic_val{suffix}'
        for split in ('val', 'test')
        for key, suffix in (('ann_file', '.json'), ('seg_prefix', '/'))
    ]


def _seg_data_options(ade_root: str) -> list:
    return [
        f'{split}_dataloader.dataset.data_root={ade_root}'
        for split in ('train', 'val', 'test')
    ]


def _kitti_data_options(kitti_root: str) -> list:
    return [
        f'{split}_dataloader.dataset.data_root={kitti_root}/'
        for split in ('train', 'val', 'test')
    ]


def _is_multi_task(cfg: Config) -> bool:
    return cfg.train_cfg.get('type') == 'UnmixedTrainLoop'


def _multi_task_data_options(cfg: Config, coco_root: str,
                             imagenet_root: str) -> list:
    """A Uni-Perceiver v2 config: COCO shapes for detection, ImageNet-format
    shapes (with the class-name file and BPE vocabulary) for
    classification."""
    root = imagenet_root.rstrip('/') + '/'
    options = data_options(coco_root) + [
        f'model.task_classes.classification={root}meta/classes.txt',
        f'model.text_encoder.tokenizer={root}meta/bpe'
    ] + [
        f'{loop}.extra_tasks.classification.dataloader.dataset.data_root='
        f'{root}' for loop in ('val_cfg', 'test_cfg')
    ]
    if cfg.train_cfg.primary_task == 'classification':
        options[0] = f'train_dataloader.dataset.data_root={root}'
    if 'classification' in cfg.train_cfg.extra_dataloaders:
        extra = 'train_cfg.extra_dataloaders.classification'
        options += [
            f'{extra}.dataset.data_root={root}', f'{extra}.batch_size=2'
        ]
    return options


def _options(config: str,
             coco_root: str,
             ade_root: str,
             train: bool,
             kitti_root: str = '',
             imagenet_root: str = '') -> list:
    """Data at the session fixtures, batch 2 in the main process; for
    ``train`` 2 iterations (or 1 epoch), no validation (mmengine validates
    at the last iteration whatever ``val_interval``) and a checkpoint at the
    end."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    if _is_multi_task(cfg):
        options = _multi_task_data_options(cfg, coco_root, imagenet_root)
    elif _is_segmentation(cfg):
        options = _seg_data_options(ade_root)
    elif _is_kitti(cfg):
        options = _kitti_data_options(kitti_root)
    elif _is_panoptic(cfg):
        options = _panoptic_data_options(coco_root)
    else:
        options = data_options(coco_root)
    options += [
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ]
    if not train:
        return options
    by_epoch = 'max_epochs' in cfg.train_cfg
    return [option for option in options if not option.startswith('val_')] + [
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'train_cfg.max_epochs=1' if by_epoch else 'train_cfg.max_iters=2',
        f'default_hooks.checkpoint.interval={1 if by_epoch else 2}',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ]


def test_tiny_configs_are_found():
    assert SEG_CONFIG in TINY_CONFIGS
    assert 'configs/demo/dino_swin-nano_1xb8-shapes.py' in TINY_CONFIGS
    assert ('configs/monodino_detr/'
            'monodino-detr_vit-nano_1xb4-kitti-shapes.py') in TINY_CONFIGS
    assert ('projects/example_project/configs/'
            'dino_dummy-swin-nano_1xb8-shapes.py') in TINY_CONFIGS
    assert len(TINY_CONFIGS) >= 11


def _train_and_test(config: str, train_options: list, test_options: list,
                    work_dir: str) -> str:
    """tools/train.py for 2 iterations, then tools/test.py on its
    checkpoint with ``--show-dir``; returns test.py's output and the
    pictures it drew."""
    env = dict(tool_env(), OMP_NUM_THREADS='1')

    def run(args):
        result = subprocess.run([sys.executable] + args,
                                cwd=REPO_ROOT,
                                env=env,
                                capture_output=True,
                                text=True,
                                timeout=900)
        assert result.returncode == 0, (
            f'{args[:2]} failed ({result.returncode}):\n'
            f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
        return result.stdout + result.stderr

    train_dir = osp.join(work_dir, 'train')
    run(['tools/train.py', config, '--work-dir', train_dir, '--cfg-options'] +
        train_options)
    checkpoints = glob.glob(osp.join(train_dir, '*.pth'))
    assert len(checkpoints) == 1, checkpoints
    show_dir = osp.join(work_dir, 'pictures')
    log = run([
        'tools/test.py', config, checkpoints[0], '--work-dir',
        osp.join(work_dir, 'test'), '--show-dir', show_dir, '--cfg-options'
    ] + test_options)
    pictures = [
        path for path in glob.glob(osp.join(show_dir, '**', '*'),
                                   recursive=True)
        if path.endswith(('.jpg', '.png'))
    ]
    return log, pictures


@pytest.fixture(scope='module')
def tiny_runs(request, coco_shapes_root, ade20k_shapes_root,
              kitti_shapes_root, imagenet_shapes_root, tmp_path_factory):
    """Starts train + test of every selected tiny config, two at a time with
    one thread each (start-up, most of a run, is single-threaded): a config's
    future, by config. Configs are read here: mmengine's ``Config`` is not
    thread-safe."""
    selected = [
        item.callspec.params['config'] for item in request.session.items
        if item.originalname == 'test_tiny_config_trains_and_tests'
    ]
    pool = ThreadPoolExecutor(2)
    yield {
        config:
        pool.submit(
            _train_and_test, config,
            _options(config, coco_shapes_root, ade20k_shapes_root, True,
                     kitti_shapes_root, imagenet_shapes_root),
            _options(config, coco_shapes_root, ade20k_shapes_root, False,
                     kitti_shapes_root, imagenet_shapes_root),
            str(tmp_path_factory.mktemp('tiny')))
        for config in selected
    }
    pool.shutdown(cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize('config', TINY_CONFIGS)
def test_tiny_config_trains_and_tests(config, tiny_runs):
    log, pictures = tiny_runs[config].result()
    assert pictures, f'--show-dir drew nothing:\n{log[-3000:]}'
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    metric = ('mIoU:' if _is_segmentation(cfg) else
              'kitti/Car_3D_moderate_R40:' if _is_kitti(cfg) else
              'coco_panoptic/PQ:' if _is_panoptic(cfg) else
              'coco/bbox_mAP:')
    assert metric in log, log[-3000:]
    if _is_multi_task(cfg):
        # one checkpoint, every task's metric
        assert 'coco/segm_mAP:' in log and 'accuracy/top1:' in log, \
            log[-3000:]


def _assert_no_non_finite_checkpoint(work_dir: str) -> None:
    for path in glob.glob(osp.join(work_dir, '**', '*.pth'), recursive=True):
        state = torch.load(path, weights_only=False)['state_dict']
        for name, value in state.items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), (path, name)


@pytest.mark.slow
def test_upernet_with_huge_lr_stops_naming_the_loss_terms(
        ade20k_shapes_root, tmp_path):
    work_dir = str(tmp_path)
    options = _options(SEG_CONFIG, '', ade20k_shapes_root, True)
    result = run_tool([
        'tools/train.py', SEG_CONFIG, '--work-dir', work_dir, '--cfg-options'
    ] + options + [
        'optim_wrapper.optimizer.lr=1e6', 'optim_wrapper.clip_grad=None',
        'param_scheduler=[]', 'train_cfg.max_iters=6',
        'default_hooks.checkpoint.interval=1'
    ],
                      check=False)
    assert result.returncode != 0
    assert ('NonFiniteLossError: Training diverged at iteration '
            in result.stderr), result.stderr[-3000:]
    assert 'non-finite loss terms: decode.loss_ce=' in result.stderr
    _assert_no_non_finite_checkpoint(work_dir)


@pytest.mark.slow
def test_dino_with_huge_lr_stops_with_vitdense_message(coco_shapes_root,
                                                       tmp_path):
    work_dir = str(tmp_path)
    result = run_tool([
        'tools/train.py', TINY_CONFIG, '--work-dir', work_dir, '--cfg-options'
    ] + data_options(coco_shapes_root) + [
        'optim_wrapper.optimizer.lr=1e6', 'optim_wrapper.clip_grad=None',
        'param_scheduler=[]', 'default_hooks.checkpoint.interval=1'
    ],
                      check=False)
    assert result.returncode != 0
    assert 'invalid numeric entries' not in result.stderr
    assert ('NonFiniteLossError: Training diverged at iteration '
            in result.stderr), result.stderr[-3000:]
    _assert_no_non_finite_checkpoint(work_dir)
