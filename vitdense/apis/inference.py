"""One-line inference with vitdense configs and checkpoints through mmdet's
:class:`~mmdet.apis.DetInferencer` and mmseg's
:class:`~mmseg.apis.MMSegInferencer`.

Both inferencers work on vitdense configs once three things are fixed, which
the subclasses here do and nothing else:

- vitdense's modules must be registered before the model is built
  (:func:`vitdense.utils.register_all_modules`);
- the config's test pipeline loads annotations (``LoadAnnotations``,
  ``LoadValidatedSegAnnotations``, ...), which an image alone does not have:
  mmseg removes only transforms named exactly ``LoadAnnotations`` and
  ``LoadDepthAnnotation``, mmdet none; here every ``Load*Annotations``
  transform is removed;
- the checkpoint is loaded as ``tools/test.py`` loads it: through vitdense's
  safe loader (``torch.load(weights_only=True)`` with an allow-list,
  :mod:`vitdense.utils.checkpoint`, which importing vitdense installs as
  mmengine's loader for every scheme) and refused when its weights do not
  fit the model (mmengine loads non-strictly and only warns).
"""
import os.path as osp
import re
from typing import Optional, Union

from mmdet.apis import DetInferencer
from mmengine.config import Config
from mmseg.apis import MMSegInferencer

from vitdense.engine.hooks import CheckpointMismatchError
from vitdense.engine.hooks.checkpoint_check_hook import state_dict_mismatch
from vitdense.utils import register_all_modules

__all__ = ['VitdenseDetInferencer', 'VitdenseSegInferencer',
           'init_inferencer', 'ANNOTATION_LOADER']

#: Transform types that read annotations, removed for inference.
ANNOTATION_LOADER = re.compile(r'(.*\.)?Load\w*Annotations?$')


class _VitdenseInferencer:
    """What both inferencers need for vitdense configs (module docstring)."""

    def _init_pipeline(self, cfg: Config):
        pipeline = cfg.test_dataloader.dataset.pipeline
        pipeline[:] = [t for t in pipeline
                       if not ANNOTATION_LOADER.match(str(t['type']))]
        return super()._init_pipeline(cfg)

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        if checkpoint is not None:
            problem = state_dict_mismatch(
                model, checkpoint.get('state_dict', checkpoint))
            if problem:
                raise CheckpointMismatchError(
                    f'the checkpoint does not fit the config\'s model: '
                    f'{problem}')
        super()._load_weights_to_model(model, checkpoint, cfg)


class VitdenseDetInferencer(_VitdenseInferencer, DetInferencer):
    """:class:`mmdet.apis.DetInferencer` for vitdense detection configs."""


class VitdenseSegInferencer(_VitdenseInferencer, MMSegInferencer):
    """:class:`mmseg.apis.MMSegInferencer` for vitdense segmentation
    configs."""


def init_inferencer(config: Union[str, Config],
                    weights: Optional[str] = None,
                    device: Optional[str] = None,
                    show_progress: bool = True,
                    **kwargs) -> Union[VitdenseDetInferencer,
                                       VitdenseSegInferencer]:
    """The inferencer of the config's task: mmdet's for a
    ``default_scope='mmdet'`` config, mmseg's for ``'mmseg'``.

    ``inferencer(image_or_paths, out_dir=...)`` then predicts, draws
    (``vis/``) and writes predictions (``preds/`` JSON for detection,
    ``pred/`` label PNGs for segmentation) as mmdet's and mmseg's demos do.

    Args:
        config (str | Config): a vitdense config (file or loaded).
        weights (str, optional): checkpoint (path or URL); without it the
            model keeps its random initialisation (as mmdet/mmseg).
        device (str, optional): e.g. ``'cpu'``; default: CUDA if available.
        show_progress (bool): a progress bar over the inputs.
        **kwargs: the inferencer's other arguments (e.g. ``palette``).
    """
    register_all_modules(init_default_scope=False)
    if isinstance(config, str):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        config = Config.fromfile(config)
    if weights is not None and '://' not in weights and \
            not osp.isfile(weights):
        raise FileNotFoundError(f'checkpoint not found: {weights}')
    if 'Kitti' in str(config.get('visualizer', {}).get('type', '')):
        raise NotImplementedError(
            'monocular 3D (KITTI) configs have no mmdet/mmseg inferencer; '
            'draw their predictions with tools/test.py --show-dir')
    scope = config.get('default_scope')
    inferencers = {'mmdet': VitdenseDetInferencer,
                   'mmseg': VitdenseSegInferencer}
    if scope not in inferencers:
        raise ValueError(f'default_scope {scope!r} of the config is not one '
                         f'of {sorted(inferencers)} (detection or '
                         'segmentation)')
    if scope == 'mmdet':
        kwargs['show_progress'] = show_progress
    inferencer = inferencers[scope](config, weights, device=device,
                                    scope=scope, **kwargs)
    inferencer.show_progress = show_progress  # mmseg's takes no argument
    return inferencer
