from .atomic_checkpoint_hook import AtomicCheckpointHook
from .checkpoint_check_hook import (CheckpointCheckHook,
                                    CheckpointMismatchError,
                                    NoTrainingStateError)
from .non_finite_check_hook import NonFiniteCheckHook, NonFiniteLossError
from .rng_state_hook import RNGStateHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointCheckHook', 'CheckpointMismatchError',
    'NoTrainingStateError', 'NonFiniteCheckHook', 'NonFiniteLossError',
    'RNGStateHook'
]
