"""Train, kill the process, --resume: the run ends where an uninterrupted
run with the same seed ends (same iteration count, loss and weights)."""
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch

from ._helpers import (REPO_ROOT, TINY_CONFIG, data_options, run_tool,
                       scalars, tool_env)

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

NO_VAL = ['train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=3']


def _final_loss(work_dir):
    return [r['loss'] for r in scalars(work_dir) if r.get('iter') == 6
            or (r.get('step') == 6 and 'loss' in r)][-1]


def test_killed_then_resumed_run_matches_uninterrupted(coco_shapes_root,
                                                       tmp_path):
    options = data_options(coco_shapes_root) + NO_VAL
    straight = str(tmp_path / 'straight')
    run_tool(['tools/train.py', TINY_CONFIG, '--work-dir', straight,
              '--cfg-options'] + options)

    killed = str(tmp_path / 'killed')
    process = subprocess.Popen(
        [sys.executable, 'tools/train.py', TINY_CONFIG, '--work-dir', killed,
         '--cfg-options'] + options + ['train_cfg.max_iters=1000'],
        cwd=REPO_ROOT, env=tool_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    checkpoint = osp.join(killed, 'iter_3.pth')
    deadline = time.time() + 300
    while not osp.exists(osp.join(killed, 'last_checkpoint')):
        assert process.poll() is None, 'training died before iteration 3'
        assert time.time() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert osp.exists(checkpoint)

    run_tool(['tools/train.py', TINY_CONFIG, '--work-dir', killed,
              '--resume', checkpoint, '--cfg-options'] + options)
    assert osp.exists(osp.join(killed, 'iter_6.pth'))
    assert _final_loss(killed) == _final_loss(straight)
    a = torch.load(osp.join(straight, 'iter_6.pth'), weights_only=False)
    b = torch.load(osp.join(killed, 'iter_6.pth'), weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=0,
                                   atol=0, msg=key)
