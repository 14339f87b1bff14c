"""vitdense.apis: mmdet's and mmseg's inferencers on vitdense configs give
tools/test.py's predictions for the same image and checkpoint, load
checkpoints safely and strictly, and drop annotation loaders; every shipped
tiny config predicts and draws through them (panoptic maps without
panopticapi); a video is predicted frame by frame as its frames are."""
import glob
import json
import os.path as osp
import pickle

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmdet.evaluation import INSTANCE_OFFSET
from mmengine.config import Config
from test_tools.test_tiny_configs import TINY_CONFIGS

from vitdense.apis import (VitdenseDetInferencer, VitdenseSegInferencer,
                           inference_video, init_inferencer)
from vitdense.apis.inference import ANNOTATION_LOADER
from vitdense.engine.hooks import CheckpointMismatchError
from vitdense.evaluation.functional.panoptic import rgb2id
from vitdense.utils import UnsafeCheckpointError

TINY_DET = 'tests/data/configs/tiny_dino_shapes.py'
SEG_CONFIG = 'configs/vit_comer/upernet_vit-comer-nano_1xb2-shapes.py'
PANOPTIC_CONFIG = ('configs/kmax_deeplab/'
                   'kmax-deeplab_r18-nano_1xb2-coco-shapes-panoptic.py')
KMAX_SEMANTIC_CONFIG = ('configs/kmax_deeplab/'
                        'kmax-deeplab_r18-nano_1xb4-ade20k-shapes.py')


def _by_image(results_pkl):
    with open(results_pkl, 'rb') as f:
        return {osp.basename(r['img_path']): r for r in pickle.load(f)}


@pytest.mark.slow
def test_det_inferencer_equals_test_tool(det_run, coco_shapes_root,
                                         repo_root):
    expected = _by_image(det_run['results'])
    inferencer = init_inferencer(osp.join(repo_root, det_run['config']),
                                 det_run['checkpoint'],
                                 device='cpu', show_progress=False)
    assert isinstance(inferencer, VitdenseDetInferencer)
    images = sorted(glob.glob(osp.join(coco_shapes_root, 'val', '*.jpg')))
    assert len(images) == len(expected) == 8
    predictions = inferencer(images[:3], return_datasamples=True)[
        'predictions']
    for image, sample in zip(images[:3], predictions):
        want = expected[osp.basename(image)]['pred_instances']
        got = sample.pred_instances
        assert len(got) == len(want['scores']) == 100
        torch.testing.assert_close(got.scores, want['scores'], rtol=0,
                                   atol=1e-6)
        torch.testing.assert_close(got.bboxes, want['bboxes'], rtol=0,
                                   atol=1e-4)
        assert torch.equal(got.labels, want['labels'])
    # the classes come from the checkpoint, as mmdet reads them
    assert inferencer.model.dataset_meta['classes'] == (
        'circle', 'square', 'triangle')


@pytest.mark.slow
def test_seg_inferencer_equals_test_tool(seg_run, ade20k_shapes_root,
                                         repo_root):
    expected = _by_image(seg_run['results'])
    inferencer = init_inferencer(osp.join(repo_root, seg_run['config']),
                                 seg_run['checkpoint'],
                                 device='cpu')
    assert isinstance(inferencer, VitdenseSegInferencer)
    images = sorted(glob.glob(osp.join(ade20k_shapes_root, 'images',
                                       'validation', '*.jpg')))
    assert len(images) == len(expected)
    predictions = inferencer(images[:2], return_datasamples=True)
    for image, sample in zip(images[:2], predictions):
        want = expected[osp.basename(image)]['pred_sem_seg']['data']
        got = sample.pred_sem_seg.data
        assert got.shape == want.shape
        assert torch.equal(got, want)
        torch.testing.assert_close(
            sample.seg_logits.data,
            expected[osp.basename(image)]['seg_logits']['data'], rtol=0,
            atol=1e-5)


def test_annotation_loaders_are_matched():
    for name in ('LoadAnnotations', 'mmdet.LoadAnnotations',
                 'LoadValidatedSegAnnotations', 'LoadDepthAnnotation',
                 'vitdense.LoadMono3DAnnotations'):
        assert ANNOTATION_LOADER.match(name), name
    for name in ('LoadImageFromFile', 'PackDetInputs', 'Resize'):
        assert not ANNOTATION_LOADER.match(name), name


def test_seg_pipeline_loses_validated_annotation_loader(repo_root):
    """mmseg's inferencer keeps LoadValidatedSegAnnotations (it removes only
    ``LoadAnnotations``), which then fails on an image without labels."""
    inferencer = init_inferencer(osp.join(repo_root, SEG_CONFIG),
                                 device='cpu')
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert names == ['InferencerLoader', 'Resize', 'PackSegInputs']
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
    label = inferencer(image)['predictions']
    assert label.shape == (50, 70)


def _tiny_checkpoint(path, repo_root, drop_key=False):
    from vitdense.utils import register_all_modules
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    register_all_modules(init_default_scope=False)
    init_default_scope('mmdet')
    model = MODELS.build(Config.fromfile(osp.join(repo_root, TINY_DET)).model)
    state = model.state_dict()
    if drop_key:
        state.pop(next(iter(state)))
    torch.save({'state_dict': state,
                'meta': {'dataset_meta': {'classes': ('a', 'b', 'c')}}}, path)
    return str(path)


def test_checkpoint_that_does_not_fit_is_refused(tmp_path, repo_root):
    checkpoint = _tiny_checkpoint(tmp_path / 'partial.pth', repo_root,
                                  drop_key=True)
    with pytest.raises(CheckpointMismatchError,
                       match="1 of the model's .* keys are missing"):
        init_inferencer(osp.join(repo_root, TINY_DET), checkpoint,
                        device='cpu')


class _Payload:

    def __reduce__(self):
        return (print, ('code ran while loading',))


def test_checkpoint_is_loaded_with_the_safe_loader(tmp_path, repo_root,
                                                   capsys):
    path = str(tmp_path / 'hostile.pth')
    torch.save({'state_dict': {}, 'meta': _Payload()}, path)
    with pytest.raises(UnsafeCheckpointError):
        init_inferencer(osp.join(repo_root, TINY_DET), path, device='cpu')
    assert 'code ran while loading' not in capsys.readouterr().out


def test_fitting_checkpoint_loads_with_its_classes(tmp_path, repo_root):
    checkpoint = _tiny_checkpoint(tmp_path / 'ok.pth', repo_root)
    inferencer = init_inferencer(osp.join(repo_root, TINY_DET), checkpoint,
                                 device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == ('a', 'b', 'c')
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert 'LoadAnnotations' not in names


def test_missing_files_and_unsupported_configs_are_clear(tmp_path,
                                                         repo_root):
    with pytest.raises(FileNotFoundError, match='config not found'):
        init_inferencer(str(tmp_path / 'none.py'))
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        init_inferencer(osp.join(repo_root, TINY_DET),
                        str(tmp_path / 'none.pth'))
    kitti = glob.glob(osp.join(repo_root, 'configs', 'monodetr', '*nano*'))[0]
    with pytest.raises(NotImplementedError, match='tools/test.py'):
        init_inferencer(kitti)


def _task(cfg: Config) -> str:
    """What a config predicts, read from its test evaluator."""
    evaluator = cfg.test_evaluator.type
    metric = cfg.test_evaluator.get('metric', [])
    if evaluator.endswith('KittiMetric'):
        return 'mono3d'
    if evaluator.endswith('IoUMetric'):
        return 'sem_seg'
    if 'Panoptic' in evaluator:
        return 'panoptic'
    return 'masks' if 'segm' in metric else 'boxes'


@pytest.fixture(scope='module')
def image(coco_shapes_root) -> np.ndarray:
    """An embedded image cut to an odd size (BGR, as files are read)."""
    return mmcv.imread(osp.join(coco_shapes_root, 'val', '000000.jpg'))[
        :121, :99]


def test_tiny_configs_cover_every_task():
    tasks = {_task(Config.fromfile(config)) for config in TINY_CONFIGS}
    assert tasks == {'boxes', 'masks', 'panoptic', 'sem_seg', 'mono3d'}


@pytest.mark.parametrize('config', TINY_CONFIGS)
def test_tiny_config_predicts_and_draws_without_weights(config, repo_root,
                                                        image, request):
    cfg = Config.fromfile(osp.join(repo_root, config))
    if cfg.model.type == 'UniPerceiverV2':
        # its class names and BPE vocabulary live with the embedded data
        root = request.getfixturevalue('imagenet_shapes_root')
        cfg.model.text_encoder.tokenizer = osp.join(root, 'meta', 'bpe')
        cfg.model.task_classes.classification = osp.join(
            root, 'meta', 'classes.txt')
    task = _task(cfg)
    if task == 'mono3d':  # needs a camera matrix per image
        with pytest.raises(NotImplementedError, match='tools/test.py'):
            init_inferencer(cfg, device='cpu')
        return
    inferencer = init_inferencer(cfg, device='cpu', show_progress=False)
    height, width = image.shape[:2]
    draw = {}
    if task == 'sem_seg':
        assert isinstance(inferencer, VitdenseSegInferencer)
        sample = inferencer(image, return_datasamples=True)
        labels = sample.pred_sem_seg.data
        assert labels.shape == (1, height, width)
        assert 0 <= labels.min() and labels.max() < len(
            inferencer.model.dataset_meta['classes'])
    else:
        assert isinstance(inferencer, VitdenseDetInferencer)
        draw = dict(pred_score_thr=0.0, no_save_vis=True)
        sample = inferencer(image, return_datasamples=True)['predictions'][0]
        result = inferencer.pred2dict(sample)
        if task == 'panoptic':
            assert 'pred_instances' not in sample
            assert sample.pred_panoptic_seg.sem_seg.shape == (1, height,
                                                              width)
            assert result['panoptic_seg'].shape == (height, width, 3)
            assert result['panoptic_seg'].dtype == np.uint8
        else:
            pred = sample.pred_instances
            assert pred.bboxes.shape == (len(pred), 4)
            assert len(result['bboxes']) == len(result['scores']) == len(
                pred)
            assert ('masks' in pred) == (task == 'masks')
            if task == 'masks':
                assert pred.masks.shape == (len(pred), height, width)
                assert len(result['masks']) == len(pred)
                assert all(m['size'] == [height, width]
                           for m in result['masks'])
    rgb = np.ascontiguousarray(image[..., ::-1])
    picture, = inferencer.visualize([rgb], [sample], return_vis=True, **draw)
    assert picture.shape == image.shape


def test_without_weights_the_classes_are_the_configs(repo_root, image):
    """mmdet names a weightless model's labels with COCO's 80 classes (and
    takes label 80 as a panoptic map's void), mmseg with Cityscapes' 19."""
    inferencer = init_inferencer(osp.join(repo_root, PANOPTIC_CONFIG),
                                 device='cpu', show_progress=False)
    assert tuple(inferencer.model.dataset_meta['classes']) == (
        'circle', 'square', 'triangle', 'sky', 'ground')
    inferencer = init_inferencer(osp.join(repo_root, KMAX_SEMANTIC_CONFIG),
                                 device='cpu')
    classes = inferencer.model.dataset_meta['classes']
    assert len(classes) == len(inferencer.model.dataset_meta['palette'])
    assert len(classes) == inferencer.model.num_classes


def test_panoptic_predictions_are_written_without_panopticapi(
        repo_root, coco_shapes_root, tmp_path):
    """mmdet's files (``preds/<image>.json`` naming
    ``preds/<image>_panoptic_seg.png``), with the void label as id 0."""
    inferencer = init_inferencer(osp.join(repo_root, PANOPTIC_CONFIG),
                                 device='cpu', show_progress=False)
    path = osp.join(coco_shapes_root, 'val', '000001.jpg')
    sample = inferencer(path, return_datasamples=True)['predictions'][0]
    pan = sample.pred_panoptic_seg.sem_seg[0].numpy().copy()
    result = inferencer([path], out_dir=str(tmp_path), no_save_pred=False)
    png = str(tmp_path / 'preds' / '000001_panoptic_seg.png')
    assert result['predictions'] == [{'panoptic_seg_path': png}]
    with open(tmp_path / 'preds' / '000001.json') as f:
        assert json.load(f) == {'panoptic_seg_path': png}
    want = np.where(pan % INSTANCE_OFFSET == 5, 0, pan)
    got = rgb2id(mmcv.imread(png, channel_order='rgb'))
    np.testing.assert_array_equal(got, want)
    # the prediction itself is left as it was
    np.testing.assert_array_equal(sample.pred_panoptic_seg.sem_seg[0], pan)
    assert cv2.imread(str(tmp_path / 'vis' / '000001.jpg')).shape == (
        128, 128, 3)


def _write_video(path, frames, fourcc):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 7,
                             frames[0].shape[1::-1])
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    decoded = []
    reader = cv2.VideoCapture(str(path))
    while True:
        ok, frame = reader.read()
        if not ok:
            return decoded
        decoded.append(frame)


def _video_frames(path):
    reader = cv2.VideoCapture(path)
    info = (reader.get(cv2.CAP_PROP_FPS), reader.get(cv2.CAP_PROP_FRAME_WIDTH),
            reader.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = 0
    while reader.read()[0]:
        count += 1
    return count, info


@pytest.mark.parametrize('config', [PANOPTIC_CONFIG, KMAX_SEMANTIC_CONFIG])
def test_video_frames_are_predicted_as_images(config, repo_root,
                                              coco_shapes_root, tmp_path):
    """Each frame's files equal the inferencer's on the decoded frame;
    the drawn video keeps the frame count, rate and size (MJPG input; the
    codecs store even sizes only)."""
    images = sorted(glob.glob(osp.join(coco_shapes_root, 'val', '*.jpg')))
    frames = _write_video(tmp_path / 'clip.avi',
                          [mmcv.imread(p)[:74, :98] for p in images[:3]],
                          'MJPG')
    assert len(frames) == 3
    assert _video_frames(str(tmp_path / 'clip.avi')) == (3, (7.0, 98., 74.))
    inferencer = init_inferencer(osp.join(repo_root, config), device='cpu',
                                 show_progress=False)
    written = inference_video(inferencer, str(tmp_path / 'clip.avi'),
                              str(tmp_path / 'out'), batch_size=2,
                              show_progress=False)
    assert written['video'] == str(tmp_path / 'out' / 'vis' / 'clip.mp4')
    assert _video_frames(written['video']) == (3, (7.0, 98.0, 74.0))
    assert written['frames'] == 3
    for index, (frame, path) in enumerate(zip(frames,
                                              written['predictions'])):
        if config == KMAX_SEMANTIC_CONFIG:
            assert path == str(tmp_path / 'out' / 'pred' /
                               f'clip_{index:06d}.png')
            want = inferencer(frame)['predictions']
            np.testing.assert_array_equal(
                cv2.imread(path, cv2.IMREAD_UNCHANGED), want)
        else:
            assert path == str(tmp_path / 'out' / 'preds' /
                               f'clip_{index:06d}.json')
            with open(path) as f:
                got = json.load(f)
            png = got['panoptic_seg_path']
            assert png == path[:-len('.json')] + '_panoptic_seg.png'
            want = inferencer.pred2dict(
                inferencer(frame, return_datasamples=True)['predictions'][0])
            np.testing.assert_array_equal(
                mmcv.imread(png, channel_order='rgb'), want['panoptic_seg'])
    assert inferencer.show_progress is False  # restored


def test_unreadable_video_is_named(repo_root, tmp_path):
    inferencer = init_inferencer(osp.join(repo_root, TINY_DET),
                                 device='cpu', show_progress=False)
    missing = str(tmp_path / 'none.mp4')
    with pytest.raises(FileNotFoundError, match=f'video not found: {missing}'):
        inference_video(inferencer, missing, str(tmp_path / 'out'))
    broken = tmp_path / 'broken.mp4'
    broken.write_text('not a video')
    with pytest.raises(ValueError,
                       match=f'cannot read the video {broken}: OpenCV'):
        inference_video(inferencer, str(broken), str(tmp_path / 'out'))
