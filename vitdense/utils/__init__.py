from .checkpoint import (UnsafeCheckpointError, install_safe_checkpoint_loader,
                         load_checkpoint_safely)
from .dist import configure_cpu_distributed
from .setup_env import register_all_modules
from .tcmalloc import find_tcmalloc, preload_tcmalloc, tcmalloc_loaded
from .work_dir_lock import (WorkDirHasCheckpointsError, WorkDirInUseError,
                            WorkDirLock, launcher_rank)

__all__ = [
    'register_all_modules', 'UnsafeCheckpointError', 'load_checkpoint_safely',
    'install_safe_checkpoint_loader', 'configure_cpu_distributed',
    'preload_tcmalloc', 'find_tcmalloc', 'tcmalloc_loaded', 'WorkDirLock', 'WorkDirInUseError',
    'WorkDirHasCheckpointsError', 'launcher_rank'
]
