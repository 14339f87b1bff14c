# Detection runtime: mmdet's, with vitdense's modules imported.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(
    imports=[
        'vitdense.datasets', 'vitdense.engine', 'vitdense.evaluation',
        'vitdense.models', 'vitdense.ops', 'vitdense.visualization'
    ],
    allow_failed_imports=False)
default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='NonFiniteCheckHook')  # a NaN/Inf loss stops training
]
