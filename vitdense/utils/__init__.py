from .checkpoint import (UnsafeCheckpointError, install_safe_checkpoint_loader,
                         load_checkpoint_safely)
from .cpu_memory import (cpu_caching_allocator_stats, empty_cpu_cache,
                         enable_cpu_caching_allocator)
from .dist import configure_cpu_distributed
from .setup_env import register_all_modules
from .work_dir_lock import (WorkDirHasCheckpointsError, WorkDirInUseError,
                            WorkDirLock, launcher_rank)

__all__ = [
    'register_all_modules', 'UnsafeCheckpointError', 'load_checkpoint_safely',
    'install_safe_checkpoint_loader', 'configure_cpu_distributed',
    'enable_cpu_caching_allocator', 'cpu_caching_allocator_stats',
    'empty_cpu_cache', 'WorkDirLock', 'WorkDirInUseError',
    'WorkDirHasCheckpointsError', 'launcher_rank'
]
