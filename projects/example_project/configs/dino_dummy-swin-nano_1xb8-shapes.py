_base_ = ['../../../configs/demo/dino_swin-nano_1xb8-shapes.py']

custom_imports = dict(
    imports=['vitdense.models', 'projects.example_project.dummy'],
    allow_failed_imports=False)

model = dict(backbone=dict(type='DummySwin'))
