"""Save and restore torch's random state with the checkpoint.

mmengine re-seeds a resumed run and replays the data loader, which restores
the data pipeline's numpy randomness, but the model's own torch randomness
(DINO/Relation-DETR denoising noise, drop-path) restarts from the seed. This
hook stores the torch CPU/CUDA generator states in the checkpoint, so that a
run resumed from iteration N continues exactly as the uninterrupted run
(single process; under DDP every rank gets rank 0's state).
"""
import torch
from mmengine.hooks import Hook

from vitdense.registry import HOOKS

__all__ = ['RNGStateHook']


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Keep ``torch`` generator states in ``checkpoint['rng_state']``."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {'torch': torch.get_rng_state()}
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None:
            return
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
