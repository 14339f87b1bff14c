"""One training run per work dir.

Two ``tools/train.py`` runs on one work dir share its log dir and overwrite
each other's checkpoints without a word. :class:`WorkDirLock` holds an
exclusive ``fcntl.flock`` on ``WORK_DIR/.train.lock`` for the whole run; the
kernel releases it when the process ends in any way (kill -9 included), so a
killed run can be resumed at once. A fresh run (not ``--resume``) also
refuses a work dir that holds another run's checkpoints, since it would
overwrite them. Only rank 0 of a distributed job takes the lock.
"""
import datetime
import fcntl
import glob
import os
import os.path as osp
import socket
import sys
from typing import List

__all__ = ['WorkDirLock', 'WorkDirInUseError', 'WorkDirHasCheckpointsError',
           'launcher_rank']

LOCK_NAME = '.train.lock'
#: What ``CheckpointHook`` writes into the work dir.
CHECKPOINT_PATTERNS = ('last_checkpoint', 'iter_*.pth', 'epoch_*.pth',
                       'best_*.pth')


class WorkDirInUseError(RuntimeError):
    """Another live process holds the work dir's lock."""


class WorkDirHasCheckpointsError(RuntimeError):
    """A fresh run would overwrite another run's checkpoints."""


def launcher_rank(launcher: str) -> int:
    """This process's global rank from the launcher's environment, known
    before the process group exists (torchrun, slurm, mpirun)."""
    variable = {'pytorch': 'RANK', 'slurm': 'SLURM_PROCID',
                'mpi': 'OMPI_COMM_WORLD_RANK'}.get(launcher)
    return int(os.environ.get(variable, 0)) if variable else 0


def _checkpoints(work_dir: str) -> List[str]:
    found = set()
    for pattern in CHECKPOINT_PATTERNS:
        found.update(osp.basename(p)
                     for p in glob.glob(osp.join(work_dir, pattern)))
    return sorted(found)


class WorkDirLock:
    """Context manager: lock ``work_dir`` for a training run.

    Args:
        work_dir (str): the run's work dir (created if needed).
        resume (bool): the run resumes (``--resume``): existing checkpoints
            are expected.
        overwrite (bool): start a fresh run even if the work dir holds
            checkpoints (``--overwrite-work-dir``).
    """

    def __init__(self, work_dir: str, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self.resume = resume
        self.overwrite = overwrite
        self._file = None

    def __enter__(self) -> 'WorkDirLock':
        os.makedirs(self.work_dir, exist_ok=True)
        # 'a+' neither truncates the holder's note nor fails if it exists.
        lock_file = open(self.path, 'a+')
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or 'unknown process'
            lock_file.close()
            raise WorkDirInUseError(
                f'work dir {self.work_dir} is in use by another training run '
                f'({holder}; lock file {self.path}). Wait until it ends or '
                'use another --work-dir.') from None
        checkpoints = _checkpoints(self.work_dir)
        if checkpoints and not (self.resume or self.overwrite):
            lock_file.close()
            raise WorkDirHasCheckpointsError(
                f'work dir {self.work_dir} already holds the checkpoints of '
                f'another run ({", ".join(checkpoints)}), which a new run '
                'would overwrite. Continue that run with --resume, start '
                'the new one in another --work-dir, or pass '
                '--overwrite-work-dir to train here anyway.')
        lock_file.truncate(0)
        lock_file.write(
            f'pid {os.getpid()} on {socket.gethostname()}, started '
            f'{datetime.datetime.now():%Y-%m-%d %H:%M:%S}: '
            f'{" ".join(sys.argv)}\n')
        lock_file.flush()
        self._file = lock_file
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()  # releases the flock
        self._file = None
