from .epff import EPFF  # noqa: F401
