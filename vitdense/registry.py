"""vitdense registries: children of the MMEngine roots under scope ``vitdense``.

Built the way mmdet builds its own (``mmdet/registry.py``), with one addition:
everything registered here is also registered, under the same name, in the
parent MMEngine root registry (through its public ``register_module``, as
mmcv registers its layers and ops), unless the root already holds the name.
MMEngine looks a plain name up in the scope's own registry first and then in
the root, so a module registered once is buildable by plain name from a
``default_scope='mmdet'``, ``'mmseg'`` or ``'vitdense'`` config (the
``vitdense.`` prefix keeps working too), and a name that mmdet, mmseg or the
root own is never shadowed: mmdet's and mmseg's own names win in their scopes
whenever they are registered, and the root's are left alone (the packages
that register into the root, mmengine's runner and mmcv's layers, ops and
transforms, are imported before the first publication, so a later import of
theirs cannot collide). A vitdense class whose name is taken stays reachable
as ``vitdense.<Name>``, e.g. ``vitdense.MultiScaleDeformableAttention``
(``MultiScaleDeformableAttention`` is mmcv's in every scope but vitdense's).
Nothing of mmdet or mmseg is imported or written to.
"""
import functools
import importlib
from typing import Dict, Optional, Type

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

#: Packages that register into the MMEngine root registries; imported before
#: vitdense publishes a name there, so that their names are known first.
ROOT_PACKAGES = ('mmengine.runner', 'mmcv.cnn', 'mmcv.ops', 'mmcv.transforms')


@functools.lru_cache(maxsize=None)
def _import_root_packages() -> None:
    for package in ROOT_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as error:
            # without mmcv (vitdense.ops alone, as on a bare GPU machine)
            # no mmcv name can collide
            if error.name != 'mmcv':
                raise


class MirroredRegistry(Registry):
    """A :class:`Registry` that also registers its modules in its parent (the
    MMEngine root) under names the parent does not hold yet."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._published: Dict[str, Type] = {}  # name -> class, in the parent

    def _register_module(self,
                         module: Type,
                         module_name: Optional[str] = None,
                         force: bool = False) -> None:
        super()._register_module(module, module_name, force)
        _import_root_packages()
        names = module_name or module.__name__
        for name in [names] if isinstance(names, str) else names:
            owner = self.parent.module_dict.get(name)
            # force replaces only what vitdense published itself
            ours = self._published.get(name) is owner
            if owner is None or (force and ours):
                self.parent.register_module(name=name, module=module,
                                            force=True)
                self._published[name] = module


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
