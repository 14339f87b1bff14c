"""Predicting every frame of a video with a vitdense inferencer.

mmdet's and mmseg's inferencers take images only; this helper reads the
frames with :class:`mmcv.VideoReader`, predicts them in batches with the
inferencer (:func:`vitdense.apis.init_inferencer`), draws each frame with
the inferencer's ``visualize`` and writes the drawn frames as a video
(``cv2.VideoWriter``, same frame rate and size) and each frame's predictions
in the format the inferencer writes for an image.
"""
import os.path as osp
from typing import Dict, List, Union

import cv2
import mmcv
import mmengine
import numpy as np
from rich.progress import track

from .inference import VitdenseDetInferencer, VitdenseSegInferencer

__all__ = ['inference_video', 'VIDEO_EXTENSIONS']

#: File name endings read as videos by ``demo/image_demo.py``.
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv')


def _frames(video: mmcv.VideoReader, show_progress: bool):
    frames = iter(video)
    if show_progress:
        frames = track(frames, total=max(video.frame_cnt, 0) or None,
                       description='Inference')
    return frames


def _batches(frames, batch_size: int):
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_prediction(inferencer, sample, out_dir: str, name: str) -> str:
    """One frame's predictions as the inferencer writes an image's:
    mmdet's ``preds/<name>.json`` (+ ``<name>_panoptic_seg.png``), mmseg's
    ``pred/<name>.png`` label map (uint8)."""
    if isinstance(inferencer, VitdenseDetInferencer):
        result = inferencer.pred2dict(sample)
        path = osp.join(out_dir, 'preds', f'{name}.json')
        if 'panoptic_seg' in result:
            result['panoptic_seg_path'] = osp.join(
                out_dir, 'preds', f'{name}_panoptic_seg.png')
            mmcv.imwrite(result.pop('panoptic_seg')[..., ::-1],
                         result['panoptic_seg_path'])
        mmengine.dump(result, path)
    else:
        path = osp.join(out_dir, 'pred', f'{name}.png')
        labels = sample.pred_sem_seg.data[0].cpu().numpy()
        mmcv.imwrite(labels.astype(np.uint8), path)
    return path


def inference_video(inferencer: Union[VitdenseDetInferencer,
                                      VitdenseSegInferencer],
                    video: str,
                    out_dir: str,
                    batch_size: int = 1,
                    pred_score_thr: float = 0.3,
                    show_progress: bool = True) -> Dict[str, Union[str, int,
                                                                   List[str]]]:
    """Predict every frame of ``video`` and write the drawn video and the
    predictions under ``out_dir``.

    Written: ``vis/<video name>.mp4`` (MPEG-4 part 2, ``mp4v``: the codec
    OpenCV's wheels can write) with the predictions drawn as for an image
    (boxes with a score of at least ``pred_score_thr``), at the input's frame
    rate and size; and one file per frame ``<video name>_<frame, 6 digits>``,
    counted from 0: ``preds/*.json`` for detection (mmdet's dict: ``labels``,
    ``scores``, ``bboxes``, ``masks`` as COCO RLE, ``panoptic_seg_path`` of a
    panoptic PNG), ``pred/*.png`` label maps for segmentation.

    Frames are predicted as arrays, as cv2 decodes them (BGR, as images are
    read from files), and drawn in RGB, as the visualizers expect.

    Args:
        inferencer: from :func:`vitdense.apis.init_inferencer`.
        video (str): a video file OpenCV can read.
        out_dir (str): where ``vis/`` and the predictions are written.
        batch_size (int): frames per forward pass.
        pred_score_thr (float): draw boxes with at least this score.
        show_progress (bool): a progress bar over the frames.

    Returns:
        dict: ``video`` (the drawn video's path), ``frames`` (the number
        read) and ``predictions`` (the files written, one per frame).
    """
    if not osp.isfile(video):
        raise FileNotFoundError(f'video not found: {video}')
    reader = mmcv.VideoReader(video)
    if not reader.opened or reader.width <= 0 or reader.height <= 0:
        raise ValueError(f'cannot read the video {video}: OpenCV does not '
                         'open it (not a video, or a codec it lacks)')
    name = osp.splitext(osp.basename(video))[0]
    out_file = osp.join(out_dir, 'vis', f'{name}.mp4')
    mmengine.mkdir_or_exist(osp.dirname(out_file))
    writer = cv2.VideoWriter(out_file, cv2.VideoWriter_fourcc(*'mp4v'),
                             reader.fps, reader.resolution)
    if not writer.isOpened():
        raise RuntimeError(f'cannot write the video {out_file} (mp4v at '
                           f'{reader.fps} fps, {reader.resolution})')
    detection = isinstance(inferencer, VitdenseDetInferencer)
    draw_kwargs = dict(pred_score_thr=pred_score_thr,
                       no_save_vis=True) if detection else {}
    predictions = []
    inner_progress = inferencer.show_progress
    inferencer.show_progress = False  # one bar over the frames instead
    try:
        for batch in _batches(_frames(reader, show_progress), batch_size):
            samples = inferencer(batch, batch_size=batch_size,
                                 return_datasamples=True)
            if detection:
                samples = samples['predictions']
            elif not isinstance(samples, list):  # mmseg's for one input
                samples = [samples]
            pictures = inferencer.visualize(
                [np.ascontiguousarray(frame[..., ::-1]) for frame in batch],
                samples, return_vis=True, **draw_kwargs)
            for sample, picture in zip(samples, pictures):
                writer.write(np.ascontiguousarray(picture[..., ::-1]))
                predictions.append(_write_prediction(
                    inferencer, sample, out_dir,
                    f'{name}_{len(predictions):06d}'))
    finally:
        inferencer.show_progress = inner_progress
        writer.release()
    if not predictions:
        raise ValueError(f'cannot read the video {video}: it has no frame '
                         'OpenCV can decode')
    return dict(video=out_file, frames=len(predictions),
                predictions=predictions)
