"""One training run per work dir: a second tools/train.py on a work dir in
use refuses and names the holder; a fresh run refuses a work dir with
another run's checkpoints unless --resume or --overwrite-work-dir."""
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

from ._helpers import REPO_ROOT, TINY_CONFIG, data_options, run_tool, tool_env


def test_lock_refuses_second_holder_and_is_released(tmp_path):
    from vitdense.utils import WorkDirInUseError, WorkDirLock
    with WorkDirLock(str(tmp_path)):
        with pytest.raises(WorkDirInUseError) as error:
            with WorkDirLock(str(tmp_path), resume=True):
                pass
        message = str(error.value)
        assert f'work dir {tmp_path} is in use' in message
        assert f'pid {os.getpid()} on' in message
        assert osp.join(str(tmp_path), '.train.lock') in message
    with WorkDirLock(str(tmp_path)):  # released on exit
        pass


def test_fresh_run_refuses_checkpoints_unless_resume_or_overwrite(tmp_path):
    from vitdense.utils import WorkDirHasCheckpointsError, WorkDirLock
    (tmp_path / 'iter_4.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    with pytest.raises(WorkDirHasCheckpointsError,
                       match=r'\(iter_4.pth, last_checkpoint\).*--resume'):
        with WorkDirLock(str(tmp_path)):
            pass
    with WorkDirLock(str(tmp_path), resume=True):
        pass
    with WorkDirLock(str(tmp_path), overwrite=True):
        pass


@pytest.mark.slow
def test_second_train_on_a_busy_work_dir_refuses(coco_shapes_root, tmp_path):
    work_dir = str(tmp_path / 'work')
    dumped_config = osp.join(work_dir, osp.basename(TINY_CONFIG))
    first = subprocess.Popen(
        [sys.executable, 'tools/train.py', TINY_CONFIG, '--work-dir',
         work_dir, '--cfg-options'] + data_options(coco_shapes_root) +
        ['train_cfg.max_iters=1000'],
        cwd=REPO_ROOT, env=tool_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not osp.exists(dumped_config):  # the runner is built
            assert first.poll() is None, 'the first run died'
            assert time.time() < deadline, 'the first run did not start'
            time.sleep(0.2)
        second = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir',
                           work_dir, '--resume', '--cfg-options'] +
                          data_options(coco_shapes_root), check=False)
    finally:
        first.kill()
        first.wait()
    assert second.returncode != 0
    assert 'WorkDirInUseError' in second.stderr
    assert f'work dir {work_dir} is in use by another training run ' \
        f'(pid {first.pid} on' in second.stderr


@pytest.mark.slow
def test_fresh_train_on_a_finished_work_dir_refuses(tmp_path):
    (tmp_path / 'iter_6.pth').write_bytes(b'')
    refused = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir',
                        str(tmp_path)], check=False)
    assert refused.returncode != 0
    assert 'already holds the checkpoints of another run (iter_6.pth)' in \
        refused.stderr
    assert '--resume' in refused.stderr
    assert '--overwrite-work-dir' in refused.stderr

    # With the flag the run gets past the lock (and stops at the missing
    # data, which it reaches only after the lock).
    allowed = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir',
                        str(tmp_path), '--overwrite-work-dir',
                        '--cfg-options'] +
                       data_options(str(tmp_path / 'absent')), check=False)
    assert allowed.returncode != 0
    assert 'already holds' not in allowed.stderr
    assert 'make_synthetic.py coco' in allowed.stderr


def test_train_help_documents_overwrite_flag(monkeypatch, capsys):
    from tools.train import parse_args
    monkeypatch.setattr(sys, 'argv', ['train.py', '--help'])
    with pytest.raises(SystemExit):
        parse_args()
    assert '--overwrite-work-dir' in capsys.readouterr().out
