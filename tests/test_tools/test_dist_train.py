"""tools/dist_train.sh: 2-process gloo DDP on CPU through torchrun; both
ranks end with identical parameters."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from ._helpers import REPO_ROOT, TINY_CONFIG, data_options, tool_env

pytestmark = pytest.mark.slow  # end-to-end runs of the tools


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_process_cpu_ddp_keeps_ranks_identical(coco_shapes_root,
                                                   tmp_path):
    hook_dir = tmp_path / 'hookpkg'
    hook_dir.mkdir()
    (hook_dir / 'dump_params_hook.py').write_text(textwrap.dedent('''
        import os.path as osp
        import torch
        from mmengine.dist import get_rank
        from mmengine.hooks import Hook
        from mmengine.registry import HOOKS

        @HOOKS.register_module()
        class DumpParamsHook(Hook):
            def after_train(self, runner):
                model = runner.model.module if hasattr(runner.model, 'module') \\
                    else runner.model
                torch.save({k: v.detach().clone() for k, v in
                            model.state_dict().items()},
                           osp.join(runner.work_dir,
                                    f'params_rank{get_rank()}.pt'))
    '''))
    config = tmp_path / 'ddp_config.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = {TINY_CONFIG!r}
        custom_imports = dict(imports=['vitdense.engine', 'dump_params_hook'],
                              allow_failed_imports=False)
        custom_hooks = [dict(type='RNGStateHook'),
                        dict(type='NonFiniteCheckHook'),
                        dict(type='DumpParamsHook')]
        train_cfg = dict(max_iters=3, val_interval=100)
    '''))
    work_dir = str(tmp_path / 'work')
    env = tool_env()
    env['PYTHONPATH'] = str(hook_dir) + os.pathsep + env['PYTHONPATH']
    env['PORT'] = str(_free_port())
    env['PYTHON'] = sys.executable
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
         work_dir, '--cfg-options'] + data_options(coco_shapes_root),
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert 'Distributed training: True' in result.stdout + result.stderr
    dumps = sorted(glob.glob(osp.join(work_dir, 'params_rank*.pt')))
    assert len(dumps) == 2
    rank0, rank1 = (torch.load(p) for p in dumps)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0,
                                   msg=key)
    checkpoint = torch.load(osp.join(work_dir, 'iter_3.pth'),
                            weights_only=False)
    assert checkpoint['meta']['iter'] == 3
    for key, value in checkpoint['state_dict'].items():
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=0, msg=key)
