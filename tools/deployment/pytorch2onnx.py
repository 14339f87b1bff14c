"""Export a DETR-family detector to ONNX, checked with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --shape H W \
        [--dynamic] [--batch-size 1] [--out FILE] [--opset 17] [--verify] \
        [--verify-shape H W ...] [--benchmark] [--threads 2] \
        [--cfg-options ...]

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
configs). Other models are refused with an error naming them. The graph is
traced by TorchScript's exporter (``torch.onnx.export(dynamo=False)``, which
torch 2.13 still ships and which needs nothing more; the dynamo exporter
would need ``onnxscript``, which is not installed, and with dynamic sizes
``torch.export`` stops at mmdet's ``pre_transformer``: its
``torch._shape_as_tensor(feat)`` of symbolic sizes raises "The tensor has a
non-zero number of elements, but its data is not allocated yet").
vitdense's compiled ops are replaced during export by their PyTorch
references in ``vitdense.ops`` (multi-scale deformable attention through
``grid_sample``, ONNX GridSample, opset >= 16; the relation bias through
plain tensor ops), so onnxruntime needs no custom op.

Without ``--dynamic`` the graph is static: batch, height and width are
those of the export (``--batch-size``, ``--shape``); another size is another
export. ``--dynamic`` exports one graph whose batch, height and width are
dynamic axes (traced at ``--batch-size`` and ``--shape``; tested: traced at
batch 1, run at batches 1 and 2 and at sizes down to a one-pixel last
level, odd sizes included). Two things make the trace follow the input
size: the MSDA reference in ``vitdense.ops`` reads the level sizes from
``spatial_shapes`` as tensors, and :func:`traceable_sizes` replaces, during
the export only, the mmdet code that computes sizes in Python (the
``torch.linspace`` of the encoder reference points and two-stage proposals,
Swin's ``AdaptivePadding`` and shifted-window padding and mask), with the
same numbers. Python values the trace still keeps are structural (levels,
layers, queries) except one: the top-k of the query selection is traced at
``num_queries``, so the export size, and every input, must give the encoder
at least ``num_queries`` tokens (mmdet's DINO needs that in PyTorch too;
Relation-DETR, which takes fewer there, is refused at such an export size
and onnxruntime's TopK fails on such an input). Inputs must still be
multiples of ``pad_size_divisor``. Not dynamic: vitdense's Swin with
``small_maps='cls'``, whose window choice per map size is Python control
flow (the trace keeps the export's).

``--verify`` runs onnxruntime (CPU) against the PyTorch model on random
images at the given shape and at each ``--verify-shape`` (default: height
and width plus ``2 * pad_size_divisor``, or +32 when that is 1): a
``--dynamic`` file itself, at batch ``--batch-size + 1`` at the other sizes,
a static one through a new export per size. It fails when boxes or scores
differ by more than ``--atol`` (default 1e-3) or labels differ.
``--benchmark`` times onnxruntime and PyTorch (the same wrapper, on
vitdense's compiled ops) on ``--threads`` threads at ``--shape``.
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
import torch.nn.functional as F
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
    """``torch.linspace`` as ``start + arange(steps) * step``. The exporter's
    own ``linspace`` divides by ``steps - 1``, so a one-pixel feature level
    (mmdet's reference points and proposals) turns into NaN. mmdet passes a
    level's height or width read from ``spatial_shapes``; while tracing that
    is a 0-dim tensor, which ``arange`` and the step keep as computed from
    the input size."""
    dtype = kwargs.pop('dtype', None) or torch.get_default_dtype()
    if isinstance(steps, Tensor):
        intervals = (steps - 1).clamp(min=1).to(dtype)
    else:
        intervals = max(int(steps) - 1, 1)
    return start + torch.arange(
        steps, dtype=dtype, **kwargs) * ((end - start) / intervals)


def _adaptive_padding(self, x: Tensor) -> Tensor:
    """mmdet's ``AdaptivePadding.forward`` (Swin's patch embedding and patch
    merging pad their input to the stride) with the padding computed from
    ``x``'s traced size: mmdet's ``math.ceil``/``max`` on Python ints and
    its ``if pad > 0`` would freeze the export's padding. A zero pad is a
    no-op, so it always pads."""
    pads = []
    for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size,
                                              self.stride, self.dilation):
        out = (size + stride - 1) // stride  # ceil(size / stride)
        pad = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
        pads.append(pad.clamp(min=0) if isinstance(pad, Tensor) else
                    max(pad, 0))
    pad_h, pad_w = pads
    if self.padding == 'corner':
        return F.pad(x, [0, pad_w, 0, pad_h])
    return F.pad(x, [
        pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def _shift_window_msa(self, query: Tensor, hw_shape) -> Tensor:
    """mmdet's ``ShiftWindowMSA.forward`` (Swin's (shifted) window
    attention; same operations, same numbers) for a trace with dynamic
    sizes. mmdet crops the window padding back only when its Python-int
    padding is positive, a choice the trace freezes (a file traced where a
    stage needs no padding, e.g. at 112x112, fails at 97x71), and its
    ``window_reverse`` recovers the batch with ``int()`` (a file traced at
    batch 1 fails at batch 2). Here the map is always padded and cropped (a
    no-op at zero padding) and the batch is read from ``query``; the
    shifted-window mask's region ids (0 / 1 / 2 for rows and columns before
    ``-window``, in ``[-window, -shift)``, from ``-shift``: mmdet's slice
    assignments) come from comparing ``arange`` with the padded size."""
    batch, _, channels = query.shape
    height, width = hw_shape
    ws, shift = self.window_size, self.shift_size
    query = query.view(batch, height, width, channels)
    pad_r = (ws - width % ws) % ws
    pad_b = (ws - height % ws) % ws
    query = F.pad(query, (0, 0, 0, pad_r, 0, pad_b))
    height_pad, width_pad = query.shape[1], query.shape[2]
    attn_mask = None
    if shift > 0:
        query = torch.roll(query, shifts=(-shift, -shift), dims=(1, 2))
        region = []
        for size in (height_pad, width_pad):
            index = torch.arange(size, device=query.device)
            region.append((index >= size - ws).to(torch.float32) +
                          (index >= size - shift).to(torch.float32))
        img_mask = (region[0][:, None] * 3 + region[1][None])[None, :, :, None]
        mask_windows = self.window_partition(img_mask).view(-1, ws * ws)
        attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0,
                                          float(-100.0)).masked_fill(
                                              attn_mask == 0, float(0.0))
    windows = self.window_partition(query).view(-1, ws * ws, channels)
    windows = self.w_msa(windows, mask=attn_mask)
    # (B * nW, ws * ws, C) -> (B, H', W', C)
    x = windows.view(batch, height_pad // ws, width_pad // ws, ws, ws,
                     channels).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, height_pad, width_pad, channels)
    if shift > 0:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    x = x[:, :height, :width].reshape(batch, height * width, channels)
    return self.drop(x)


@contextlib.contextmanager
def traceable_sizes() -> Iterator[None]:
    """While tracing, mmdet's size-dependent code computes its sizes from
    the input, so one graph serves every height and width (``--dynamic``):
    ``torch.linspace`` (mmdet's encoder reference points and two-stage
    proposals) as :func:`_linspace`, Swin's ``AdaptivePadding`` and
    ``ShiftWindowMSA`` forwards as :func:`_adaptive_padding` and
    :func:`_shift_window_msa`. The rest needs nothing: mmdet's
    ``pre_transformer`` builds no mask and sine positional encodings from
    ``arange(H)`` of the traced feature size during an export, its
    ``spatial_shapes`` are ``torch._shape_as_tensor`` of the features, and
    vitdense's ops trace their PyTorch references by themselves
    (:func:`vitdense.ops._ext.backend`), to standard ONNX operators, with
    sizes read from ``spatial_shapes``."""
    from unittest import mock

    from mmdet.models.backbones.swin import ShiftWindowMSA
    from mmdet.models.layers.transformer.utils import AdaptivePadding
    with mock.patch.object(torch, 'linspace', _linspace), \
            mock.patch.object(AdaptivePadding, 'forward', _adaptive_padding), \
            mock.patch.object(ShiftWindowMSA, 'forward', _shift_window_msa):
        yield


#: ``dynamic_axes`` of a ``--dynamic`` export
DYNAMIC_AXES = {
    'images': {0: 'batch', 2: 'height', 3: 'width'},
    **{name: {0: 'batch'} for name in OUTPUT_NAMES}
}


def check_dynamic_shape(wrapper: DetrExportWrapper, images: Tensor) -> None:
    """Refuse a ``--dynamic`` export at a size whose encoder has fewer tokens
    than ``num_queries``: the query selection's top-k (Relation-DETR caps it
    at the number of tokens) would be traced at that number."""
    detector = wrapper.detector
    with torch.no_grad():
        feats = detector.extract_feat(wrapper.preprocess(images))
    tokens = sum(feat.shape[-2] * feat.shape[-1] for feat in feats)
    if tokens < detector.num_queries:
        raise ValueError(
            f'--dynamic: input {images.shape[-2]}x{images.shape[-1]} gives '
            f'{tokens} encoder tokens, fewer than num_queries='
            f'{detector.num_queries}; export at a larger --shape (the graph '
            'then needs inputs with at least that many tokens)')


def export(wrapper: DetrExportWrapper,
           shape: Sequence[int],
           out: str,
           opset: int = 17,
           batch_size: int = 1,
           dynamic: bool = False) -> None:
    """Trace ``wrapper`` on a (batch_size, 3, H, W) input into ``out``;
    ``dynamic``: with batch, height and width as dynamic axes."""
    if opset < MIN_OPSET:
        raise ValueError(f'--opset {opset} is below {MIN_OPSET}: deformable '
                         'attention needs ONNX GridSample (opset 16)')
    height, width = shape
    wrapper.check_shape(height, width)
    images = torch.rand(batch_size, 3, height, width) * 255
    if dynamic:
        check_dynamic_shape(wrapper, images)
    with traceable_sizes(), torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on Python values it keeps as constants (the
        # numbers of levels, layers and queries), on constant folding and on
        # the legacy exporter
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
            dynamic_axes=DYNAMIC_AXES if dynamic else None,
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


def verify(wrapper: DetrExportWrapper,
           out: str,
           shape: Tuple[int, int],
           opset: int,
           batch_size: int,
           atol: float,
           dynamic: bool = False,
           other_shapes: Optional[Sequence[Sequence[int]]] = None) -> None:
    """onnxruntime vs PyTorch on ``out`` at ``shape`` and at each of
    ``other_shapes`` (default: :func:`second_shape`): a ``dynamic`` ``out``
    itself, at batch ``batch_size + 1`` there (another batch too), a static
    one through a new export at each."""
    others = [tuple(size) for size in other_shapes or ()] or [
        second_shape(wrapper, shape)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        checks = [(out, tuple(shape), batch_size)]
        for height, width in others:
            if dynamic:
                wrapper.check_shape(height, width)
                checks.append((out, (height, width), batch_size + 1))
                continue
            path = osp.join(tmp, f'{height}x{width}.onnx')
            export(wrapper, (height, width), path, opset, batch_size)
            checks.append((path, (height, width), batch_size))
        sessions = {}
        for file, size, batch in checks:
            if file not in sessions:
                sessions[file] = ort_session(file)
            images = torch.rand(batch, 3, *size) * 255
            diffs = compare(wrapper, sessions[file], images, atol)
            print(f'verified {size[0]}x{size[1]}, batch {batch}: max '
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
    parser.add_argument(
        '--dynamic', action='store_true',
        help='one file for every batch, height and width (dynamic axes; '
        'traced at --batch-size and --shape, which must give the encoder at '
        'least num_queries tokens; inputs still multiples of '
        'pad_size_divisor)')
    parser.add_argument('--out', help='output file (default: next to the '
                        'checkpoint, .onnx, or ./CONFIG_NAME.onnx)')
    parser.add_argument('--opset', type=int, default=17,
                        help=f'ONNX opset (>= {MIN_OPSET})')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='batch of the traced (and verified) input')
    parser.add_argument(
        '--verify', action='store_true',
        help='compare onnxruntime with PyTorch at --shape and at each '
        '--verify-shape (default: H and W plus 2 * pad_size_divisor, or +32); '
        'a --dynamic file itself there, at batch --batch-size + 1, a static '
        'one through a new export')
    parser.add_argument(
        '--verify-shape', type=int, nargs=2, action='append',
        metavar=('H', 'W'), help='another size for --verify (repeatable)')
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
    traced = 'dynamic batch and size, traced at ' if args.dynamic else ''
    try:
        export(wrapper, shape, out, args.opset, args.batch_size, args.dynamic)
        print(f'exported {type(detector).__name__} ({args.config}) to {out} '
              f'(opset {args.opset}, {traced}batch {args.batch_size}, '
              f'{shape[0]}x{shape[1]})')
        if args.verify:
            verify(wrapper, out, shape, args.opset, args.batch_size,
                   args.atol, args.dynamic, args.verify_shape)
    except ValueError as error:  # a size or an opset the graph cannot take
        raise SystemExit(f'pytorch2onnx: {error}')
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
