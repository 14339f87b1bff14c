from .checkpoint import (UnsafeCheckpointError, install_safe_checkpoint_loader,
                         load_checkpoint_safely)
from .dist import configure_cpu_distributed
from .setup_env import register_all_modules

__all__ = [
    'register_all_modules', 'UnsafeCheckpointError', 'load_checkpoint_safely',
    'install_safe_checkpoint_loader', 'configure_cpu_distributed'
]
