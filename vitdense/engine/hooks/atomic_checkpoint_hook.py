"""Checkpoints that survive a kill at any moment.

mmengine 0.10.7's ``CheckpointHook`` deletes the oldest kept checkpoint
before it writes the new one, writes the new file in place, and rewrites
``last_checkpoint`` in place: a kill during a save with ``max_keep_ckpts=1``
leaves no complete checkpoint and a ``last_checkpoint`` naming a missing or
truncated file. :class:`AtomicCheckpointHook` keeps mmengine's behaviour and
arguments and changes the order and the writes:

1. every file (checkpoints, best checkpoints, ``last_checkpoint``) is written
   to a temporary file in the same directory, flushed and ``fsync``-ed, then
   renamed over the target with ``os.replace`` and the directory is
   ``fsync``-ed, so a reader sees the old file or the complete new one;
2. ``last_checkpoint`` names the new file only once that file is complete;
3. outdated checkpoints (``max_keep_ckpts``, a replaced best checkpoint) are
   deleted only after that.

``tools/train.py`` uses it in place of ``CheckpointHook``. The guarantee
covers local directories; for other storage (``backend_args`` or an
``out_dir`` URI) the writes are mmengine's.
"""
import glob
import os
import os.path as osp
from typing import Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from vitdense.registry import HOOKS

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write']

#: Suffix of the temporary files; ``.{name}.partial`` next to the target.
PARTIAL_SUFFIX = '.partial'


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(filepath: str, data: Union[bytes, str]) -> None:
    """Write ``data`` to ``filepath`` so that a kill at any moment leaves
    either the previous file or the complete new one."""
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    partial = osp.join(directory,
                       f'.{osp.basename(filepath)}{PARTIAL_SUFFIX}')
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        with open(partial, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filepath)
    except BaseException:
        if osp.exists(partial):
            os.remove(partial)
        raise
    _fsync_dir(directory)


@register_backend('vitdense_atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put``/``put_text`` go through
    :func:`atomic_write`; ``runner.save_checkpoint`` writes through it."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with atomic writes and
    deletion of outdated checkpoints only after the new one is complete."""

    def before_train(self, runner) -> None:
        out_dir = str(self.out_dir or runner.work_dir)
        if (self.file_client_args is None and self.backend_args is None
                and '://' not in out_dir):
            self.backend_args = dict(backend='vitdense_atomic_local')
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend,
                                            AtomicLocalBackend):
            # What a kill during a write left behind; named only by us.
            pattern = osp.join(self.out_dir, f'.*{PARTIAL_SUFFIX}')
            for partial in glob.glob(pattern):
                os.remove(partial)
                runner.logger.info(f'Removed {partial}, left by an '
                                   'interrupted checkpoint save.')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated: Optional[int] = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            # Bookkeeping first: the message hub saved in the new checkpoint
            # lists the checkpoints kept once it is written.
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                     self.last_ckpt)
        if outdated is not None:
            self._remove(
                self.file_backend.join_path(
                    self.out_dir, self.filename_tmpl.format(outdated)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's, with the previous best checkpoint deleted after the
        new one is written instead of before."""
        if not self.save_best:
            return
        if len(self.key_indicators) == 1:
            previous = {None: self.best_ckpt_path}
            self.best_ckpt_path = None  # mmengine deletes what is set here
        else:
            previous = dict(self.best_ckpt_path_dict)
            self.best_ckpt_path_dict = dict.fromkeys(previous)
        super()._save_best_checkpoint(runner, metrics)
        for key, old_path in previous.items():
            if key is None:
                new_path = self.best_ckpt_path
                self.best_ckpt_path = new_path or old_path
            else:
                new_path = self.best_ckpt_path_dict[key]
                self.best_ckpt_path_dict[key] = new_path or old_path
            if old_path and new_path and new_path != old_path and \
                    is_main_process():
                self._remove(old_path)
                runner.logger.info(
                    f'The previous best checkpoint {old_path} is removed')

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)
