from .multi_task_loops import (MultiTaskTestLoop, MultiTaskValLoop,
                               UnmixedTrainLoop)

__all__ = ['MultiTaskTestLoop', 'MultiTaskValLoop', 'UnmixedTrainLoop']
