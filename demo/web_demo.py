"""A web page that predicts on an uploaded image with a vitdense model.

``python demo/web_demo.py CONFIG --weights CKPT [--device cpu] [--port 7860]``

Serves a gradio page: upload an image, see the predictions drawn on it and
a table of them (detection: class, score and box x1, y1, x2, y2 in pixels
of the image, for scores of at least the threshold; segmentation: class and
share of the pixels). The model runs through
:func:`vitdense.apis.init_inferencer` (mmdet's ``DetInferencer`` or mmseg's
``MMSegInferencer``). With ``--example IMAGE`` the page opens with that
image and its predictions (docs/images/web_demo.png). The page's function
is also an API (``gradio_client.Client(url).predict(handle_file(path),
0.3, api_name='/predict')``). Needs gradio (``requirements/optional.txt``).
"""
import argparse
import functools
import importlib.util
import os.path as osp
import sys
from typing import List, Optional, Tuple

import mmcv
import numpy as np

from vitdense.apis import VitdenseDetInferencer, init_inferencer

DET_HEADERS = ['class', 'score', 'x1', 'y1', 'x2', 'y2']
SEG_HEADERS = ['class', 'pixels (%)']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='vitdense config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--device', default=None,
                        help='e.g. cpu or cuda:0 (default: CUDA if present)')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='initial score threshold of the page')
    parser.add_argument('--example', default=None,
                        help='an image shown with its predictions when the '
                        'page opens')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=7860)
    return parser.parse_args()


def predict(inferencer, image: np.ndarray,
            score_thr: float) -> Tuple[np.ndarray, List[list]]:
    """The drawn image (RGB) and the table rows for an RGB ``image``.

    The model takes arrays in cv2's BGR order (as files are read), while
    mmdet's and mmseg's ``visualize`` draw on an array as given (RGB), so
    the two steps get the image in their own orders."""
    if image is None:
        raise ValueError('upload an image first')
    bgr = np.ascontiguousarray(image[..., ::-1])
    classes = inferencer.model.dataset_meta['classes']
    if isinstance(inferencer, VitdenseDetInferencer):
        sample = inferencer(bgr, return_datasamples=True)['predictions'][0]
        picture = inferencer.visualize([image], [sample], return_vis=True,
                                       no_save_vis=True,
                                       pred_score_thr=score_thr)[0]
        pred = sample.pred_instances
        keep = pred.scores >= score_thr
        rows = [[classes[label], round(score, 4)] +
                [round(v, 1) for v in box]
                for label, score, box in zip(pred.labels[keep].tolist(),
                                             pred.scores[keep].tolist(),
                                             pred.bboxes[keep].tolist())]
        rows.sort(key=lambda row: -row[1])
    else:
        sample = inferencer(bgr, return_datasamples=True)
        picture = inferencer.visualize([image], [sample], return_vis=True)[0]
        labels = sample.pred_sem_seg.data[0].cpu().numpy()
        ids, counts = np.unique(labels, return_counts=True)
        shares = 100 * counts / labels.size
        rows = sorted(([classes[i], round(float(share), 2)]
                       for i, share in zip(ids, shares)), key=lambda r: -r[1])
    return picture, rows


def build_demo(inferencer, score_thr: float = 0.3,
               example: Optional[str] = None):
    """The gradio page (a ``gradio.Interface``) for ``inferencer``;
    ``example``: an image shown with its predictions when the page opens
    (predicted here, once)."""
    import gradio as gr
    detection = isinstance(inferencer, VitdenseDetInferencer)
    image = picture = rows = None
    if example is not None:
        image = mmcv.imread(example, channel_order='rgb')
        picture, rows = predict(inferencer, image, score_thr)
    return gr.Interface(
        fn=functools.partial(predict, inferencer),
        inputs=[gr.Image(value=image, type='numpy', label='image'),
                gr.Slider(0, 1, value=score_thr, step=0.05,
                          label='score threshold', visible=detection)],
        outputs=[gr.Image(value=picture, type='numpy', label='predictions'),
                 gr.Dataframe(value=rows, headers=DET_HEADERS if detection
                              else SEG_HEADERS, label='table')],
        title='vitdense',
        description=('Upload an image: the predictions of '
                     f'{osp.basename(inferencer.cfg.filename)} are drawn '
                     'and listed.'),
        flagging_mode='never',
        api_name='predict')


def main():
    args = parse_args()
    for what, path in (('config', args.config), ('checkpoint', args.weights),
                       ('example image', args.example or args.config)):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path}')
    if importlib.util.find_spec('gradio') is None:
        sys.exit('error: the web demo needs gradio: '
                 'pip install -r requirements/optional.txt')
    inferencer = init_inferencer(args.config, args.weights, args.device,
                                 show_progress=False)
    build_demo(inferencer, args.pred_score_thr, args.example).launch(
        server_name=args.host, server_port=args.port)


if __name__ == '__main__':
    main()
