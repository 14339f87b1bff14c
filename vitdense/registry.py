"""vitdense registries: children of the MMEngine roots under scope ``vitdense``.

Built the way mmdet builds its own (``mmdet/registry.py``), with one addition:
everything registered here is also published, under the same name, into the
mmdet and mmseg registries of the same kind.  A backbone registered once is
therefore buildable from a ``default_scope='mmdet'`` config, a
``default_scope='mmseg'`` config and a ``default_scope='vitdense'`` config,
without the ``vitdense.`` prefix (the prefix keeps working too).  A name that
mmdet/mmseg already own is left to them; the vitdense class then stays
reachable as ``vitdense.<Name>``.
"""
import importlib
from typing import Optional, Type

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import \
    RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import \
    WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

__all__ = [
    'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS',
    'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS',
    'WEIGHT_INITIALIZERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR',
    'TASK_UTILS', 'VISUALIZERS', 'VISBACKENDS'
]

#: Downstream toolboxes whose registries mirror vitdense's.
MIRRORED_SCOPES = ('mmdet', 'mmseg')


class MirroredRegistry(Registry):
    """A :class:`Registry` that also publishes its modules to mmdet/mmseg."""

    def _register_module(self,
                         module: Type,
                         module_name: Optional[str] = None,
                         force: bool = False) -> None:
        super()._register_module(module, module_name, force)
        names = module_name or module.__name__
        names = [names] if isinstance(names, str) else names
        for target in self._mirror_targets():
            for name in names:
                if name not in target._module_dict or force:
                    target._module_dict[name] = module

    def _mirror_targets(self):
        for scope in MIRRORED_SCOPES:
            try:
                package = importlib.import_module(f'{scope}.registry')
            except ImportError:
                continue
            for value in vars(package).values():
                if (isinstance(value, Registry) and value.scope == scope
                        and value.parent is self.parent):
                    # Load the target's own modules first, so that its names
                    # win and its later registrations never collide.
                    value.import_from_location()
                    yield value
                    break


def _child(name: str, parent: Registry, location: str) -> MirroredRegistry:
    return MirroredRegistry(
        name, parent=parent, scope='vitdense', locations=[location])


RUNNERS = _child('runner', MMENGINE_RUNNERS, 'vitdense.engine')
RUNNER_CONSTRUCTORS = _child('runner constructor',
                             MMENGINE_RUNNER_CONSTRUCTORS, 'vitdense.engine')
LOOPS = _child('loop', MMENGINE_LOOPS, 'vitdense.engine')
HOOKS = _child('hook', MMENGINE_HOOKS, 'vitdense.engine.hooks')
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS,
                        'vitdense.engine')
DATASETS = _child('dataset', MMENGINE_DATASETS, 'vitdense.datasets')
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS,
                       'vitdense.datasets')
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS,
                    'vitdense.datasets.transforms')
MODELS = _child('model', MMENGINE_MODELS, 'vitdense.models')
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS,
                        'vitdense.models')
WEIGHT_INITIALIZERS = _child('weight initializer',
                             MMENGINE_WEIGHT_INITIALIZERS, 'vitdense.models')
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, 'vitdense.engine')
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS,
                        'vitdense.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    'vitdense.engine')
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS,
                          'vitdense.engine')
METRICS = _child('metric', MMENGINE_METRICS, 'vitdense.evaluation')
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, 'vitdense.evaluation')
TASK_UTILS = _child('task util', MMENGINE_TASK_UTILS, 'vitdense.models')
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS,
                     'vitdense.visualization')
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS,
                     'vitdense.visualization')
