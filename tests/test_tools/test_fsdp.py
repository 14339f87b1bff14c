"""configs/_base_/strategies/fsdp.py: two gloo processes on the CPU, one
training step of a tiny model through mmengine's FSDPStrategy (the config's
settings, the CPU device tools/train.py sets) and through mmengine's
DDPStrategy give the same parameters, and FSDP really shards them; the tiny
DINO config trains with it through tools/dist_train.sh and writes one
checkpoint with the model's own keys."""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp

from ._helpers import REPO_ROOT, TINY_CONFIG, data_options, tool_env

STRATEGY = osp.join(REPO_ROOT, 'configs', '_base_', 'strategies', 'fsdp.py')
WORLD = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _tiny_model():
    from mmengine.model import BaseModel
    from torch import nn

    class Tiny(BaseModel):

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.block1 = nn.Sequential(nn.Linear(8, 32), nn.GELU())
            self.block2 = nn.Sequential(nn.Linear(32, 32), nn.GELU())
            self.head = nn.Linear(32, 3)

        def forward(self, inputs, data_samples=None, mode='loss'):
            out = self.head(self.block2(self.block1(inputs)))
            return dict(loss=(out - data_samples).pow(2).mean())

    return Tiny()


def _step(rank: int, port: int, results: dict) -> None:
    import torch.distributed as dist
    from mmengine.config import Config
    from mmengine.registry import STRATEGIES
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from tools.train import configure_cpu_fsdp
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    cfg = Config.fromfile(STRATEGY)
    configure_cpu_fsdp(cfg)
    # the tiny blocks (1k parameters) as their own FSDP units
    cfg.strategy.model_wrapper.auto_wrap_policy.min_num_params = 1000
    generator = torch.Generator().manual_seed(rank)
    data = dict(inputs=torch.randn(4, 8, generator=generator),
                data_samples=torch.randn(4, 3, generator=generator))
    optim = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.5))
    params = {}
    for name, strategy in (
        ('fsdp', cfg.strategy),
        ('ddp', dict(type='DDPStrategy',
                     model_wrapper=dict(type='MMDistributedDataParallel',
                                        device_ids=None)))):
        strategy = STRATEGIES.build(strategy)
        model, optim_wrapper = strategy.prepare(
            _tiny_model(), optim_wrapper=dict(optim))
        model.train_step(dict(data), optim_wrapper)
        if name == 'fsdp':
            local = sum(p.numel() for p in model.parameters())
            with FSDP.summon_full_params(model):
                params[name] = {
                    k.replace('_fsdp_wrapped_module.', ''): v.detach().clone()
                    for k, v in model.module.named_parameters()
                }
        else:
            params[name] = {
                k: v.detach().clone()
                for k, v in model.module.named_parameters()
            }
    total = sum(v.numel() for v in params['ddp'].values())
    results[rank] = dict(
        type=cfg.runner_type,
        local=local,
        total=total,
        keys=(sorted(params['fsdp']), sorted(params['ddp'])),
        diff=max(
            float((params['fsdp'][k] - v).abs().max())
            for k, v in params['ddp'].items()),
        moved=float((params['ddp']['head.weight'] -
                     _tiny_model().head.weight).abs().max()))
    dist.destroy_process_group()


def _worker(rank: int, port: int, queue) -> None:
    results = {}
    try:
        _step(rank, port, results)
        queue.put((rank, results[rank]))
    except BaseException as error:  # report, then fail the process
        queue.put((rank, repr(error)))
        raise


@pytest.mark.skipif(not torch.distributed.is_gloo_available(),
                    reason='needs the gloo backend')
def test_fsdp_step_equals_ddp_step_on_two_cpu_processes():
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    port = _free_port()
    env = dict(os.environ)
    os.environ['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get(
        'PYTHONPATH', '')
    try:
        procs = [
            ctx.Process(target=_worker, args=(rank, port, queue))
            for rank in range(WORLD)
        ]
        for proc in procs:
            proc.start()
        results = dict(queue.get(timeout=300) for _ in range(WORLD))
        for proc in procs:
            proc.join(timeout=60)
    finally:
        os.environ.clear()
        os.environ.update(env)
    for rank in range(WORLD):
        result = results[rank]
        assert isinstance(result, dict), result
        assert result['type'] == 'FlexibleRunner'
        assert result['keys'][0] == result['keys'][1]
        # one step changed the weights, identically under FSDP and DDP
        assert result['moved'] > 1e-3
        assert result['diff'] < 1e-6
        # each rank holds about half of the (padded) flat parameters
        assert result['local'] <= result['total'] // WORLD + WORLD * 3


@pytest.mark.slow
def test_tiny_dino_trains_with_fsdp_through_dist_train(coco_shapes_root,
                                                       tmp_path):
    config = tmp_path / 'fsdp_config.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = [{TINY_CONFIG!r}, {STRATEGY!r}]
        train_cfg = dict(max_iters=3, val_interval=100)
    '''))
    work_dir = str(tmp_path / 'work')
    env = tool_env()
    env['PORT'] = str(_free_port())
    env['PYTHON'] = sys.executable
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
         work_dir, '--cfg-options'] + data_options(coco_shapes_root),
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert 'Distributed training: True' in log
    assert 'FSDPStrategy' in log
    checkpoint = torch.load(osp.join(work_dir, 'iter_3.pth'),
                            weights_only=False)
    assert checkpoint['meta']['iter'] == 3
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from vitdense.utils import register_all_modules
    cfg = Config.fromfile(TINY_CONFIG)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    state = checkpoint['state_dict']
    assert sorted(state) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        assert state[key].shape == value.shape, key
