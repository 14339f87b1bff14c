"""Predict on an image, a folder of images or a video with a vitdense model.

``python demo/image_demo.py IMAGE_DIR_OR_VIDEO CONFIG --weights CKPT
[--device cpu] [--out-dir DIR] [--pred-score-thr 0.3] [--batch-size 1]``

Detection configs run mmdet's ``DetInferencer``, segmentation configs
mmseg's ``MMSegInferencer`` (:func:`vitdense.apis.init_inferencer`), with a
progress bar over a folder. Written under ``--out-dir``: ``vis/`` the
pictures with the predictions drawn (boxes with a score of at least
``--pred-score-thr``), and the predictions: ``preds/<image>.json`` for
detection (every kept box: ``labels``, ``scores``, ``bboxes`` as x1, y1, x2,
y2 pixels of the input image; ``masks`` as COCO RLE for instance
segmentation, ``panoptic_seg_path`` of a panoptic PNG), ``pred/*.png`` label
maps for semantic segmentation (mmseg's files).

A video (``.mp4``, ``.avi``, ... :data:`vitdense.apis.VIDEO_EXTENSIONS`) is
predicted frame by frame, ``--batch-size`` frames at a time, with a progress
bar over the frames (:func:`vitdense.apis.inference_video`): ``vis/<video
name>.mp4`` is the drawn video (same frame rate and size) and the
predictions are one file per frame named ``<video name>_<frame>`` (frame
counted from 0, 6 digits), in the formats above. Example on the ``make
demo`` checkpoint::

    python demo/image_demo.py data/coco_shapes/val \\
        configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py \\
        --weights "$(cat work_dirs/demo/last_checkpoint)" --device cpu
    python demo/image_demo.py my_clip.mp4 \\
        configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py \\
        --weights "$(cat work_dirs/demo/last_checkpoint)" --batch-size 4
"""
import argparse
import os.path as osp
import sys

from vitdense.apis import (VIDEO_EXTENSIONS, VitdenseDetInferencer,
                           inference_video, init_inferencer)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('inputs', help='an image file, a folder of images or '
                        f'a video ({", ".join(VIDEO_EXTENSIONS)})')
    parser.add_argument('config', help='vitdense config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--device', default=None,
                        help='e.g. cpu or cuda:0 (default: CUDA if present)')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and the predictions are written')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='draw boxes with at least this score')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images (video frames) per forward pass')
    return parser.parse_args()


def main():
    args = parse_args()
    for what, path in (('input', args.inputs), ('config', args.config),
                       ('checkpoint', args.weights)):
        if not osp.exists(path):
            sys.exit(f'error: {what} not found: {path}')
    inferencer = init_inferencer(args.config, args.weights, args.device)
    if args.inputs.lower().endswith(VIDEO_EXTENSIONS):
        try:
            written = inference_video(inferencer, args.inputs, args.out_dir,
                                      batch_size=args.batch_size,
                                      pred_score_thr=args.pred_score_thr)
        except ValueError as error:
            sys.exit(f'error: {error}')
        print(f'video: {written["video"]} ({written["frames"]} frames), '
              'predictions: '
              f'{osp.dirname(written["predictions"][0])}')
    elif isinstance(inferencer, VitdenseDetInferencer):
        inferencer(args.inputs, batch_size=args.batch_size,
                   out_dir=args.out_dir, pred_score_thr=args.pred_score_thr,
                   no_save_pred=False)
        print(f'pictures: {osp.join(args.out_dir, "vis")}, predictions: '
              f'{osp.join(args.out_dir, "preds")}')
    else:
        inferencer(args.inputs, batch_size=args.batch_size,
                   out_dir=args.out_dir)
        print(f'pictures: {osp.join(args.out_dir, "vis")}, label maps: '
              f'{osp.join(args.out_dir, "pred")}')


if __name__ == '__main__':
    main()
