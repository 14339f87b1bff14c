"""vitdense: dense prediction with vision transformers on OpenMMLab."""
from .utils.checkpoint import install_safe_checkpoint_loader
from .version import __version__

install_safe_checkpoint_loader()

__all__ = ['__version__']
