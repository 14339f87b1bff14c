"""demo/image_demo.py writes pictures and JSON predictions equal to
tools/test.py's, and a drawn video with per-frame predictions equal to the
inferencer's on the frames; demo/web_demo.py answers an uploaded image with
a picture and a table through gradio's client."""
import glob
import json
import os.path as osp
import pickle
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from test_tools._helpers import REPO_ROOT, run_tool, tool_env  # noqa: E402

pytestmark = pytest.mark.slow  # the demos run as subprocesses


def _expected(results_pkl):
    with open(results_pkl, 'rb') as f:
        return {osp.splitext(osp.basename(r['img_path']))[0]:
                r['pred_instances'] for r in pickle.load(f)}


def test_image_demo_writes_pictures_and_predictions_of_a_folder(
        det_run, coco_shapes_root, tmp_path):
    out_dir = str(tmp_path / 'out')
    result = run_tool(['demo/image_demo.py', osp.join(coco_shapes_root, 'val'),
                       det_run['config'], '--weights', det_run['checkpoint'],
                       '--device', 'cpu', '--out-dir', out_dir,
                       '--pred-score-thr', '0.01'])
    assert 'Inference' in result.stdout + result.stderr  # progress bar
    expected = _expected(det_run['results'])
    pictures = sorted(glob.glob(osp.join(out_dir, 'vis', '*.jpg')))
    predictions = sorted(glob.glob(osp.join(out_dir, 'preds', '*.json')))
    assert len(pictures) == len(predictions) == len(expected) == 8
    assert cv2.imread(pictures[0]).shape == (128, 128, 3)
    for path in predictions:
        with open(path) as f:
            pred = json.load(f)
        want = expected[osp.splitext(osp.basename(path))[0]]
        np.testing.assert_allclose(pred['scores'], want['scores'].numpy(),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(pred['bboxes'], want['bboxes'].numpy(),
                                   rtol=0, atol=1e-4)
        assert pred['labels'] == want['labels'].tolist()


def test_image_demo_names_a_missing_file(det_run, tmp_path):
    missing = str(tmp_path / 'none.jpg')
    result = run_tool(['demo/image_demo.py', missing, det_run['config'],
                       '--weights', det_run['checkpoint']], check=False)
    assert result.returncode != 0
    assert f'error: input not found: {missing}' in result.stderr
    result = run_tool(['demo/image_demo.py', missing, det_run['config'],
                       '--weights', missing + '.pth'], check=False)
    assert 'error: input not found' in result.stderr


def test_image_demo_predicts_every_frame_of_a_video(det_run,
                                                    coco_shapes_root,
                                                    tmp_path, repo_root):
    from vitdense.apis import init_inferencer
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (128, 128))
    for path in sorted(glob.glob(osp.join(coco_shapes_root, 'val',
                                          '*.jpg')))[:5]:
        writer.write(cv2.imread(path))
    writer.release()
    reader, frames = cv2.VideoCapture(video), []
    while True:
        ok, frame = reader.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 5
    out_dir = str(tmp_path / 'out')
    result = run_tool(['demo/image_demo.py', video, det_run['config'],
                       '--weights', det_run['checkpoint'], '--device', 'cpu',
                       '--out-dir', out_dir, '--batch-size', '2',
                       '--pred-score-thr', '0.01'])
    assert 'Inference' in result.stdout + result.stderr  # progress bar
    drawn = cv2.VideoCapture(osp.join(out_dir, 'vis', 'clip.mp4'))
    assert (drawn.get(cv2.CAP_PROP_FPS), drawn.get(cv2.CAP_PROP_FRAME_WIDTH),
            drawn.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (5, 128, 128)
    count = 0
    while drawn.read()[0]:
        count += 1
    assert count == 5
    names = sorted(glob.glob(osp.join(out_dir, 'preds', '*.json')))
    assert [osp.basename(n) for n in names] == [
        f'clip_{i:06d}.json' for i in range(5)]
    inferencer = init_inferencer(osp.join(repo_root, det_run['config']),
                                 det_run['checkpoint'], device='cpu',
                                 show_progress=False)
    wants = inferencer(frames)['predictions']
    for name, want in zip(names, wants):
        with open(name) as f:
            got = json.load(f)
        assert len(got['scores']) == len(want['scores']) == 100
        np.testing.assert_allclose(got['scores'], want['scores'], rtol=0,
                                   atol=1e-6)
        np.testing.assert_allclose(got['bboxes'], want['bboxes'], rtol=0,
                                   atol=1e-4)
        assert got['labels'] == want['labels']


def test_image_demo_names_an_unreadable_video(det_run, tmp_path):
    video = tmp_path / 'broken.avi'
    video.write_bytes(b'not a video')
    result = run_tool(['demo/image_demo.py', str(video), det_run['config'],
                       '--weights', det_run['checkpoint'], '--device', 'cpu',
                       '--out-dir', str(tmp_path / 'out')], check=False)
    assert result.returncode != 0
    assert f'error: cannot read the video {video}' in result.stderr


def test_image_demo_segmentation_writes_pictures_and_label_maps(
        seg_run, ade20k_shapes_root, tmp_path):
    image, = sorted(glob.glob(osp.join(ade20k_shapes_root, 'images',
                                       'validation', '*.jpg')))[:1]
    out_dir = str(tmp_path / 'out')
    run_tool(['demo/image_demo.py', image, seg_run['config'], '--weights',
              seg_run['checkpoint'], '--device', 'cpu', '--out-dir', out_dir])
    assert osp.isfile(osp.join(out_dir, 'vis', osp.basename(image)))
    label_map, = glob.glob(osp.join(out_dir, 'pred', '*.png'))
    with open(seg_run['results'], 'rb') as f:
        want = {osp.basename(r['img_path']): r for r in pickle.load(f)}[
            osp.basename(image)]['pred_sem_seg']['data'][0].numpy()
    np.testing.assert_array_equal(cv2.imread(label_map, cv2.IMREAD_UNCHANGED),
                                  want)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_web_demo_returns_a_picture_and_a_table(det_run, coco_shapes_root):
    pytest.importorskip('gradio')
    from gradio_client import Client, handle_file
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, 'demo/web_demo.py', det_run['config'], '--weights',
         det_run['checkpoint'], '--device', 'cpu', '--port', str(port)],
        cwd=REPO_ROOT, env=tool_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while True:
            try:
                client = Client(f'http://127.0.0.1:{port}/', verbose=False)
                break
            except Exception:
                assert server.poll() is None, server.stdout.read()[-3000:]
                assert time.monotonic() < deadline, 'the server did not start'
                time.sleep(2)
        image = osp.join(coco_shapes_root, 'val', '000000.jpg')
        picture, table = client.predict(handle_file(image), 0.0,
                                        api_name='/predict')
        # nothing scores 1: the picture is the upload, in its colours
        bare, no_rows = client.predict(handle_file(image), 1.0,
                                       api_name='/predict')
    finally:
        server.terminate()
        server.wait(30)
    drawn = cv2.imread(picture)
    assert drawn is not None and drawn.shape == (128, 128, 3)
    assert no_rows['data'] == []
    difference = np.abs(cv2.imread(bare).astype(float) -
                        cv2.imread(image).astype(float)).mean()
    assert difference < 8, difference
    assert table['headers'] == ['class', 'score', 'x1', 'y1', 'x2', 'y2']
    want = _expected(det_run['results'])['000000']
    assert len(table['data']) == len(want['scores']) == 100
    best = int(want['scores'].argmax())
    name, score, *box = table['data'][0]
    assert name == ('circle', 'square', 'triangle')[want['labels'][best]]
    assert score == pytest.approx(float(want['scores'][best]), abs=1e-4)
    np.testing.assert_allclose(box, want['bboxes'][best].numpy(), atol=0.051)
