"""The one reader of the converters: tensors only, from .pth/.bin (either
torch.save format), .safetensors and HF model folders."""
import os
import os.path as osp

import pytest
import torch

from vitdense.converters.io import (CheckpointLayoutError, PickledObjectsError,
                                    backbone_state_dict, check_layout,
                                    read_checkpoint)
from vitdense.utils import UnsafeCheckpointError


class _Payload:
    """Pickles to a call of os.system: what a hostile checkpoint does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.mark.parametrize('zip_format', [True, False])
def test_read_checkpoint_refuses_pickled_code_naming_file_and_global(
        tmp_path, zip_format):
    marker = str(tmp_path / 'pwned')
    src = str(tmp_path / 'evil.pth')
    torch.save({'model': {'w': torch.ones(1)}, 'x': _Payload(marker)}, src,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(PickledObjectsError) as info:
        read_checkpoint(src)
    assert isinstance(info.value, UnsafeCheckpointError)
    assert isinstance(info.value, RuntimeError)
    assert src in str(info.value) and 'system' in str(info.value)
    assert not osp.exists(marker)


def test_read_checkpoint_reads_tensors_and_plain_containers(tmp_path):
    src = str(tmp_path / 'plain.pth')
    torch.save({'model': {'w': torch.arange(3.)}, 'epoch': 3}, src)
    checkpoint = read_checkpoint(src)
    assert checkpoint['epoch'] == 3
    assert torch.equal(checkpoint['model']['w'], torch.arange(3.))


def test_read_checkpoint_reads_safetensors_and_hf_folders(tmp_path):
    from safetensors.torch import save_file
    src = str(tmp_path / 'model.safetensors')
    save_file({'w': torch.arange(4.)}, src)
    assert torch.equal(read_checkpoint(src)['w'], torch.arange(4.))

    folder = tmp_path / 'hf'
    folder.mkdir()
    (folder / 'config.json').write_text('{}')
    torch.save({'w': torch.zeros(2)}, str(folder / 'pytorch_model.bin'))
    assert torch.equal(read_checkpoint(str(folder))['w'], torch.zeros(2))
    # model.safetensors is preferred, as transformers does
    save_file({'w': torch.ones(2)}, str(folder / 'model.safetensors'))
    assert torch.equal(read_checkpoint(str(folder))['w'], torch.ones(2))


def test_read_checkpoint_names_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_checkpoint(str(tmp_path))


def test_backbone_state_dict_unwraps_and_strips_prefixes():
    t = torch.ones(1)
    checkpoint = {'meta': {}, 'state_dict': {'module.backbone.a.w': t,
                                             'module.neck.b.w': t}}
    assert backbone_state_dict(checkpoint) == {'a.w': t}
    assert backbone_state_dict({'model': {'a.w': t}}) == {'a.w': t}
    with pytest.raises(CheckpointLayoutError, match='list'):
        backbone_state_dict([t])


def test_check_layout_names_expected_and_found_keys():
    layouts = {'A': ('x', 'y'), 'B': ('z', )}
    assert check_layout({'z': 0}, layouts) == 'B'
    with pytest.raises(CheckpointLayoutError) as info:
        check_layout({'x': 0, 'other': 0}, layouts)
    message = str(info.value)
    assert "A: ['x', 'y']" in message and "B: ['z']" in message
    assert "'other'" in message
