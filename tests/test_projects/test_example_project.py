"""The example project's model builds from its config via custom_imports."""
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

CONFIG = 'projects/example_project/configs/dino_dummy-swin-nano_1xb8-shapes.py'


def test_example_project_loads_through_custom_imports(repo_root,
                                                      monkeypatch):
    monkeypatch.chdir(repo_root)
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(CONFIG)
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'DummySwin'
    features = model.backbone(torch.zeros(1, 3, 64, 96))
    assert model.backbone.last_input_shape == (1, 3, 64, 96)
    assert [f.shape[1] for f in features] == [96, 192, 384]
