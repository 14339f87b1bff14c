# Segmentation runtime: mmseg's, with vitdense's modules imported.
_base_ = 'mmseg::_base_/default_runtime.py'

custom_imports = dict(
    imports=[
        'vitdense.datasets', 'vitdense.engine', 'vitdense.evaluation',
        'vitdense.models', 'vitdense.ops'
    ],
    allow_failed_imports=False)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='NonFiniteCheckHook')  # a NaN/Inf loss stops training
]
