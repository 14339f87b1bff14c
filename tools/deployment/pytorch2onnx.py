"""Export a DETR-family detector to ONNX, checked with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --shape H W \
        [--batch-size 1] [--out FILE] [--opset 17] [--verify] \
        [--benchmark] [--threads 2] [--cfg-options ...]

Exported: ``images`` (B, 3, H, W) float32, raw pixels in the channel order
the config's pipeline loads (BGR for mmcv's ``LoadImageFromFile``), not
normalised and not padded -> ``boxes`` (B, K, 4) x1y1x2y2 in input pixels,
``scores`` (B, K) and ``labels`` (B, K) int64, K = ``test_cfg.max_per_img``.
The config's ``DetDataPreprocessor`` normalisation (channel flip, mean, std)
runs inside the graph; its padding does not, so H and W must be multiples of
``pad_size_divisor`` (the tool says so otherwise) and boxes are not rescaled
to an original image (mmdet's ``predict(..., rescale=False)``; divide by the
resize factor yourself).

Accepted: every mmdet ``DeformableDETR`` subclass whose head is a
``DeformableDETRHead`` with a sigmoid classifier (Deformable DETR, DINO,
vitdense's AnyWidthDINO, RelationDINO, RelationDETR and later DETR-family
models built on them); tested: RelationDETR and AnyWidthDINO (the demo
configs). Other models are refused with an error naming them. The graph is traced by TorchScript's
exporter (``torch.onnx.export(dynamo=False)``, which torch 2.13 still ships
and which needs nothing more; the dynamo exporter would need ``onnxscript``).
vitdense's compiled ops are replaced during export by their PyTorch
references in ``vitdense.ops`` (multi-scale deformable attention through
``grid_sample``, ONNX GridSample, opset >= 16; the relation bias through
plain tensor ops), so onnxruntime needs no custom op.

The graph is static: batch, height and width are those of the export
(``--batch-size``, ``--shape``); another size is another export.
``--dynamic`` is refused with the reason: mmdet's Deformable DETR builds its
reference points and proposals with ``torch.linspace(..., H)`` and the MSDA
reference splits the levels by Python ints, which the tracer records as
constants, so a file traced at one size fails at another (dynamic sizes need
a trace-friendly MSDA reference in ``vitdense.ops`` and those mmdet
generators rewritten).

``--verify`` runs onnxruntime (CPU) against the PyTorch model on random
images at the given shape and, through a second export, at another one
(height and width plus ``2 * pad_size_divisor``, or +32 when that is 1) and
fails when boxes or scores differ by more than ``--atol`` (default 1e-3) or
labels differ. ``--benchmark`` times onnxruntime and PyTorch (the same
wrapper, on vitdense's compiled ops) on ``--threads`` threads.
"""
import argparse
import contextlib
import os.path as osp
import sys
import tempfile
import time
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from torch import Tensor, nn

OUTPUT_NAMES = ('boxes', 'scores', 'labels')
MIN_OPSET = 16  # ONNX GridSample


def _supported_types() -> tuple:
    from mmdet.models.dense_heads import DeformableDETRHead
    from mmdet.models.detectors import DeformableDETR
    return DeformableDETR, DeformableDETRHead


def check_exportable(model: nn.Module, config: str = '') -> None:
    """Raise ``ValueError`` naming ``model``'s type (and ``config``) unless
    it is a Deformable-DETR-family detector with a sigmoid classifier."""
    detr_type, head_type = _supported_types()
    where = f' (config {config})' if config else ''
    name = type(model).__name__
    if not isinstance(model, detr_type):
        raise ValueError(
            f'pytorch2onnx cannot export {name}{where}: only mmdet '
            "DeformableDETR subclasses are supported (DeformableDETR, DINO, "
            "vitdense's AnyWidthDINO, RelationDINO, RelationDETR)")
    head = getattr(model, 'bbox_head', None)
    if not isinstance(head, head_type) or not head.loss_cls.use_sigmoid:
        raise ValueError(
            f'pytorch2onnx cannot export {name}{where}: its bbox_head '
            f'{type(head).__name__} is not a DeformableDETRHead with a '
            'sigmoid classifier')


class DetrExportWrapper(nn.Module):
    """``images -> (boxes, scores, labels)`` for a DeformableDETR-family
    detector: the data preprocessor's normalisation, ``extract_feat``,
    ``forward_transformer``, the head's forward and, in tensors, the
    post-processing of mmdet's ``DETRHead._predict_by_feat_single`` with a
    sigmoid classifier and ``rescale=False`` (top-k over queries x classes,
    cxcywh -> x1y1x2y2 in pixels, clamped to the image). It does not change
    the detector; one eval-mode detector can be wrapped many times.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        check_exportable(detector)
        self.detector = detector
        preprocessor = detector.data_preprocessor
        self.flip_channels = bool(
            getattr(preprocessor, '_channel_conversion', False))
        self.normalize = bool(getattr(preprocessor, '_enable_normalize',
                                      False))
        self.pad_size_divisor = int(
            getattr(preprocessor, 'pad_size_divisor', 1))
        self.max_per_img = (detector.bbox_head.test_cfg or {}).get(
            'max_per_img', detector.num_queries)
        self.eval()

    def check_shape(self, height: int, width: int) -> None:
        """Refuse a size the data preprocessor would pad."""
        divisor = self.pad_size_divisor
        if height % divisor or width % divisor:
            raise ValueError(
                f'input {height}x{width} is not a multiple of the config\'s '
                f'pad_size_divisor={divisor}: the exported graph neither '
                'pads nor masks padding, so export (and feed) a size that '
                'is a multiple of it')

    def data_samples(self, images: Tensor) -> List:
        """Metainfo for an unpadded batch: ``img_shape`` equals
        ``batch_input_shape``, so mmdet's ``pre_transformer`` builds no
        padding mask (as when exporting, where it never does)."""
        from mmdet.structures import DetDataSample
        shape = tuple(int(s) for s in images.shape[-2:])
        return [
            DetDataSample(
                metainfo=dict(batch_input_shape=shape, img_shape=shape))
            for _ in range(images.shape[0])
        ]

    def preprocess(self, images: Tensor) -> Tensor:
        """``DetDataPreprocessor``'s channel flip and normalisation."""
        if self.flip_channels:
            images = images[:, [2, 1, 0]]
        if self.normalize:
            preprocessor = self.detector.data_preprocessor
            images = (images - preprocessor.mean) / preprocessor.std
        return images

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        detector = self.detector
        samples = self.data_samples(images)
        feats = detector.extract_feat(self.preprocess(images))
        head_inputs = detector.forward_transformer(feats, samples)
        cls_scores, bbox_preds = detector.bbox_head(
            head_inputs['hidden_states'], head_inputs['references'])
        cls_score, bbox_pred = cls_scores[-1], bbox_preds[-1]  # (B, Q, C/4)
        num_classes = cls_score.shape[-1]
        scores, indexes = cls_score.sigmoid().flatten(1).topk(
            self.max_per_img, dim=1)
        labels = indexes % num_classes
        bbox_pred = bbox_pred.gather(
            1, (indexes // num_classes).unsqueeze(-1).expand(-1, -1, 4))
        cxcy, wh = bbox_pred.split([2, 2], dim=-1)
        boxes = torch.cat([cxcy - 0.5 * wh, cxcy + 0.5 * wh], dim=-1)
        # (w, h) of the input
        size = torch._shape_as_tensor(images)[2:].flip(0).to(boxes.dtype)
        size = size.repeat(2)
        boxes = torch.min(torch.clamp(boxes * size, min=0), size)
        return boxes, scores, labels


def _linspace(start, end, steps, **kwargs) -> Tensor:
    """``torch.linspace`` as ``start + arange(steps) * step``: the exporter's
    own ``linspace`` divides by ``steps - 1``, so a one-pixel feature level
    (mmdet's reference points and proposals) turns into NaN."""
    step = (end - start) / max(int(steps) - 1, 1)
    dtype = kwargs.pop('dtype', None) or torch.get_default_dtype()
    return start + torch.arange(int(steps), dtype=dtype, **kwargs) * step


@contextlib.contextmanager
def traceable_linspace() -> Iterator[None]:
    """``torch.linspace`` as :func:`_linspace` while tracing. vitdense's ops
    trace their PyTorch references by themselves during an export
    (:func:`vitdense.ops._ext.backend`), to standard ONNX operators."""
    from unittest import mock
    with mock.patch.object(torch, 'linspace', _linspace):
        yield


def export(wrapper: DetrExportWrapper,
           shape: Sequence[int],
           out: str,
           opset: int = 17,
           batch_size: int = 1) -> None:
    """Trace ``wrapper`` on a (batch_size, 3, H, W) input into ``out``."""
    if opset < MIN_OPSET:
        raise ValueError(f'--opset {opset} is below {MIN_OPSET}: deformable '
                         'attention needs ONNX GridSample (opset 16)')
    height, width = shape
    wrapper.check_shape(height, width)
    images = torch.rand(batch_size, 3, height, width) * 255
    with traceable_linspace(), torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on constant shapes (why height and width are
        # static), on constant folding and on the legacy exporter
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', UserWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (images, ),
            out,
            input_names=['images'],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False)
    import onnx
    onnx.checker.check_model(onnx.load(out))


def ort_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])


def compare(wrapper: DetrExportWrapper, session, images: Tensor,
            atol: float) -> Dict[str, float]:
    """Max |difference| of boxes and scores between onnxruntime and the
    PyTorch wrapper (on vitdense's compiled ops) for ``images``; labels must
    be equal. Raises ``AssertionError`` naming what differs."""
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(images)]
    got = session.run(list(OUTPUT_NAMES), {'images': images.numpy()})
    for name, want, have in zip(OUTPUT_NAMES, expected, got):
        if want.shape != have.shape:
            raise AssertionError(f'{name}: onnxruntime shape {have.shape} '
                                 f'!= PyTorch {want.shape}')
    diffs = {
        name: float(np.abs(want.astype(np.float64) - have).max())
        for name, want, have in zip(OUTPUT_NAMES[:2], expected, got)
    }
    bad = {k: v for k, v in diffs.items() if v > atol}
    if bad:
        raise AssertionError(
            f'onnxruntime differs from PyTorch at input '
            f'{tuple(images.shape)}: max |diff| {bad} > {atol}')
    wrong = int((expected[2] != got[2]).sum())
    if wrong:
        raise AssertionError(f'onnxruntime gives {wrong} other labels than '
                             f'PyTorch at input {tuple(images.shape)}')
    return diffs


def second_shape(wrapper: DetrExportWrapper,
                 shape: Sequence[int]) -> Tuple[int, int]:
    step = wrapper.pad_size_divisor
    step = 2 * step if step > 1 else 32
    return shape[0] + step, shape[1] + step


def time_interleaved(fns: Sequence, warmup: int,
                     iters: int) -> List[float]:
    """Median seconds per call of each of ``fns``, called in turn (so a
    shared machine's load drifts over all of them alike) after ``warmup``
    rounds."""
    times = [[] for _ in fns]
    for i in range(warmup + iters):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                record.append(time.perf_counter() - start)
    return [float(np.median(record)) for record in times]


def build_detector(config: str, checkpoint: Optional[str],
                   cfg_options: Optional[dict] = None) -> nn.Module:
    """The config's detector in eval mode on CPU with ``checkpoint``'s
    weights (random initialisation when None)."""
    from mmengine.registry import MODELS

    from vitdense.utils import register_all_modules
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    else:
        model.init_weights()
    return model.eval()


def verify(wrapper: DetrExportWrapper, out: str, shape: Tuple[int, int],
           opset: int, batch_size: int, atol: float) -> None:
    """onnxruntime vs PyTorch on ``out`` at ``shape`` and, through a second
    export, at :func:`second_shape`."""
    with tempfile.TemporaryDirectory() as tmp:
        second = second_shape(wrapper, shape)
        path = osp.join(tmp, 'second.onnx')
        export(wrapper, second, path, opset, batch_size)
        for file, size in ((out, shape), (path, second)):
            images = torch.rand(batch_size, 3, *size) * 255
            diffs = compare(wrapper, ort_session(file), images, atol)
            print(f'verified {size[0]}x{size[1]}, batch {batch_size}: max '
                  f'|diff| boxes {diffs["boxes"]:.2e}, scores '
                  f'{diffs["scores"]:.2e} (<= {atol}), labels equal')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a DETR-family detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help="checkpoint file ('none': random weights)")
    parser.add_argument(
        '--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
        help='input height and width (multiples of pad_size_divisor)')
    parser.add_argument('--dynamic', action='store_true',
                        help='refused: dynamic axes do not trace correctly '
                        'yet (see the module docstring)')
    parser.add_argument('--out', help='output file (default: next to the '
                        'checkpoint, .onnx, or ./CONFIG_NAME.onnx)')
    parser.add_argument('--opset', type=int, default=17,
                        help=f'ONNX opset (>= {MIN_OPSET})')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='batch of the traced (and verified) input')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch at two sizes')
    parser.add_argument('--atol', type=float, default=1e-3,
                        help='--verify tolerance on boxes and scores')
    parser.add_argument('--benchmark', action='store_true',
                        help='time onnxruntime and PyTorch on CPU')
    parser.add_argument('--threads', type=int, default=2,
                        help='CPU threads for --benchmark')
    parser.add_argument('--iters', type=int, default=20,
                        help='timed calls per --benchmark run')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, xxx=yyy')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.dynamic:
        raise SystemExit(
            'pytorch2onnx: --dynamic is not supported yet: the traced graph '
            'keeps the export\'s feature-map sizes as constants (mmdet\'s '
            'reference points/proposals and the MSDA reference); export '
            'once per input size instead '
            '(see tools/deployment/pytorch2onnx.py)')
    checkpoint = None if args.checkpoint == 'none' else args.checkpoint
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or (osp.splitext(checkpoint)[0] + '.onnx'
                       if checkpoint else f'{name}.onnx')
    torch.manual_seed(0)
    detector = build_detector(args.config, checkpoint, args.cfg_options)
    try:
        check_exportable(detector, args.config)
    except ValueError as error:
        raise SystemExit(str(error))
    wrapper = DetrExportWrapper(detector)
    shape = tuple(args.shape)
    export(wrapper, shape, out, args.opset, args.batch_size)
    print(f'exported {type(detector).__name__} ({args.config}) to {out} '
          f'(opset {args.opset}, batch {args.batch_size}, '
          f'{shape[0]}x{shape[1]})')
    if args.verify:
        verify(wrapper, out, shape, args.opset, args.batch_size, args.atol)
    if args.benchmark:
        torch.set_num_threads(args.threads)
        images = torch.rand(args.batch_size, 3, *shape) * 255
        session = ort_session(out, args.threads)
        feed = {'images': images.numpy()}
        with torch.no_grad():
            ort_s, torch_s = time_interleaved(
                [lambda: session.run(None, feed), lambda: wrapper(images)],
                3, args.iters)
        print(f'CPU, {args.threads} threads, batch {args.batch_size}, '
              f'{shape[0]}x{shape[1]}, median of {args.iters} interleaved '
              f'calls: onnxruntime {ort_s * 1000:.1f} ms, PyTorch '
              f'{torch_s * 1000:.1f} ms '
              f'(PyTorch / onnxruntime {torch_s / ort_s:.2f}x)')


if __name__ == '__main__':
    sys.exit(main())
