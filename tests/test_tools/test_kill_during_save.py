"""tools/train.py killed (SIGKILL) half way through writing a checkpoint,
with the configs' plain ``CheckpointHook``: the previous checkpoints survive
and load, ``last_checkpoint`` names a complete file, no truncated checkpoint
is left under a checkpoint's name, and ``--resume`` continues the run."""
import glob
import os.path as osp
import signal
import textwrap

import pytest

from vitdense.utils import load_checkpoint_safely

from ._helpers import TINY_CONFIG, data_options, run_tool

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

# Runs tools/train.py with `open` patched: the first binary write of a file
# whose name contains KILL_AT writes half its bytes and kills the process.
KILLING_LAUNCHER = textwrap.dedent('''
    import builtins, os, os.path as osp, runpy, signal, sys

    kill_at = sys.argv.pop(1)
    real_open = builtins.open

    class DyingFile:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.f.close()
        def __getattr__(self, name):
            return getattr(self.f, name)
        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

    def dying_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if 'w' in mode and 'b' in mode and \\
                kill_at in osp.basename(str(file)):
            return DyingFile(f)
        return f

    builtins.open = dying_open
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
''')


def _checkpoints(work_dir):
    return sorted(osp.basename(p)
                  for p in glob.glob(osp.join(work_dir, 'iter_*.pth')))


@pytest.mark.parametrize('max_keep', [1, 2])
def test_kill_during_checkpoint_write_keeps_previous(coco_shapes_root,
                                                     tmp_path, max_keep):
    launcher = tmp_path / 'killing_launcher.py'
    launcher.write_text(KILLING_LAUNCHER)
    work_dir = str(tmp_path / 'work')
    options = data_options(coco_shapes_root) + [
        'train_cfg.max_iters=4', 'train_cfg.val_begin=1000',
        'default_hooks.checkpoint.interval=1',
        f'default_hooks.checkpoint.max_keep_ckpts={max_keep}']
    killed = run_tool([str(launcher), 'iter_3.pth', 'tools/train.py',
                       TINY_CONFIG, '--work-dir', work_dir, '--cfg-options']
                      + options, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    expected = [f'iter_{i}.pth' for i in range(3 - max_keep, 3)]
    assert _checkpoints(work_dir) == expected
    for name in expected:
        step = int(name[len('iter_'):-len('.pth')])
        checkpoint = load_checkpoint_safely(osp.join(work_dir, name))
        assert checkpoint['meta']['iter'] == step
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert osp.basename(f.read().strip()) == 'iter_2.pth'

    if max_keep == 2:
        return
    # The kill released the work dir's lock: --resume continues the run,
    # removes the partial file and again keeps max_keep checkpoints.
    run_tool(['tools/train.py', TINY_CONFIG, '--work-dir', work_dir,
              '--resume', '--cfg-options'] + options)
    assert _checkpoints(work_dir) == [
        f'iter_{i}.pth' for i in range(5 - max_keep, 5)]
    assert load_checkpoint_safely(osp.join(
        work_dir, 'iter_4.pth'))['meta']['iter'] == 4
    assert glob.glob(osp.join(work_dir, '.*.partial')) == []
