"""state_dict_mismatch compares as mmengine loads and names the first keys
of each kind with their counts."""
import torch
import torch.nn as nn

from vitdense.engine.hooks.checkpoint_check_hook import state_dict_mismatch


def _model():
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


def test_matching_state_dict_is_accepted_as_mmengine_loads_it():
    model = _model()
    state = {f'module.{k}': v for k, v in model.state_dict().items()
             if not k.endswith('num_batches_tracked')}
    assert state_dict_mismatch(model, state) == ''


def test_mismatch_names_first_keys_and_counts():
    model = _model()
    state = dict(model.state_dict())
    state['0.weight'] = torch.zeros(4, 2)
    del state['1.bias']
    for i in range(7):
        state[f'head.{i}.weight'] = torch.zeros(1)
    problem = state_dict_mismatch(model, state)
    assert problem == (
        '1 of 7 tensors have another shape (checkpoint vs model): '
        '0.weight (4, 2) vs (3, 2); '
        "1 of the model's 7 keys are missing: 1.bias; "
        "7 of the checkpoint's 13 keys are not in the model: head.0.weight, "
        'head.1.weight, head.2.weight, head.3.weight, head.4.weight, ...')
