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

Two more gaps are closed where they show: without a checkpoint the classes
are the config's test dataset's (mmdet falls back to COCO's 80, mmseg to
Cityscapes' 19, which name a tiny model's labels wrongly and set the wrong
void label of a panoptic map); and mmdet's panoptic predictions are written
without panopticapi (:meth:`VitdenseDetInferencer.pred2dict`).
"""
import os.path as osp
import re
from typing import Dict, Optional, Union

import mmcv
import mmengine
from mmdet.apis import DetInferencer
from mmdet.evaluation import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DATASETS
from mmseg.apis import MMSegInferencer

from vitdense.engine.hooks import CheckpointMismatchError
from vitdense.engine.hooks.checkpoint_check_hook import state_dict_mismatch
from vitdense.evaluation.functional.panoptic import VOID, id2rgb
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
        if checkpoint is None:
            dataset = dict(cfg.test_dataloader.dataset, lazy_init=True)
            metainfo = DATASETS.build(dataset).metainfo
            meta = {key: metainfo[key] for key in ('classes', 'palette')
                    if key in metainfo}
            if getattr(self, 'palette', 'none') != 'none':
                meta['palette'] = self.palette  # mmdet's palette argument
            model.dataset_meta.update(meta)


class VitdenseDetInferencer(_VitdenseInferencer, DetInferencer):
    """:class:`mmdet.apis.DetInferencer` for vitdense detection configs."""

    def pred2dict(self, data_sample: DetDataSample,
                  pred_out_dir: str = '') -> Dict:
        """mmdet's prediction dict, with the panoptic map written as mmdet
        writes it but through vitdense's ``VOID``/``id2rgb``
        (:mod:`vitdense.evaluation.functional.panoptic`): mmdet 3.3 imports
        them from panopticapi, which does not install with numpy 2, and
        raises for every ``pred_panoptic_seg`` without it.

        The map's ids ``label + instance * INSTANCE_OFFSET`` become PNG
        colours (``rgb2id`` reads them back), the void label
        (``len(classes)``) becomes ``VOID``: ``preds/<image>_panoptic_seg.png``
        named by ``panoptic_seg_path`` with ``pred_out_dir``, else the RGB
        array ``panoptic_seg``.
        """
        if 'pred_panoptic_seg' not in data_sample:
            return super().pred2dict(data_sample, pred_out_dir)
        count = self.num_predicted_imgs  # mmdet's name of a path-less image
        panoptic = data_sample.pred_panoptic_seg
        del data_sample.pred_panoptic_seg
        try:
            result = super().pred2dict(data_sample, pred_out_dir)
        finally:
            data_sample.pred_panoptic_seg = panoptic
        pan = panoptic.sem_seg.cpu().numpy()[0].copy()
        pan[pan % INSTANCE_OFFSET == len(
            self.model.dataset_meta['classes'])] = VOID
        pan = id2rgb(pan)
        if not pred_out_dir:
            result['panoptic_seg'] = pan
            return result
        name = (osp.splitext(osp.basename(data_sample.img_path))[0]
                if 'img_path' in data_sample else str(count))
        result['panoptic_seg_path'] = osp.join(pred_out_dir, 'preds',
                                               f'{name}_panoptic_seg.png')
        mmcv.imwrite(pan[..., ::-1], result['panoptic_seg_path'])
        mmengine.dump(result, osp.join(pred_out_dir, 'preds', f'{name}.json'))
        return result


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
            'monocular 3D (KITTI) configs have no mmdet/mmseg inferencer '
            '(each image needs its camera calibration); draw their '
            'predictions with tools/test.py --show-dir')
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
