from .varifocal_loss import IoUVarifocalLoss  # noqa: F401
