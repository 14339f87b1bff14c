"""tools/analysis_tools/eval_kitti.py scores a submission folder."""
import json

import pytest

from ._helpers import run_tool

TOOL = 'tools/analysis_tools/eval_kitti.py'
CLASSES = ('Car', 'Pedestrian', 'Cyclist')


def _labels(num_frames=15):
    """Label lines of easy objects, three per class and frame (the devkit
    needs more than 40 ground truths of a class for a perfect AP of 100),
    and a DontCare region in frame 1."""
    labels = {}
    for frame in range(num_frames):
        lines = []
        for k, name in enumerate(CLASSES):
            for slot in range(3):
                x1 = 60 + 380 * slot + 100 * k
                lines.append(
                    f'{name} 0.00 0 {0.1 * frame - 1:.2f} {x1}.00 150.00 '
                    f'{x1 + 60}.00 {200 + 10 * k}.00 1.60 1.70 '
                    f'{4 - k:.2f} {6 * slot - 6 + 1.5 * k:.2f} 1.65 '
                    f'{10 + 5 * k + 0.5 * frame:.2f} {0.1 * frame - 1:.2f}')
        if frame == 1:
            lines.append('DontCare -1 -1 -10 503.89 169.71 590.61 190.13 '
                         '-1 -1 -1 -1000 -1000 -1000 -10')
        labels[f'{frame:06d}'] = lines
    return labels


def _write(folder, files, scored=False):
    """Label files, or (scored) result files with distinct scores (the
    devkit's thresholds assume no ties) and no DontCare."""
    folder.mkdir()
    for frame, (sample_id, lines) in enumerate(files.items()):
        if scored:
            lines = [line + f' {0.9 - 0.001 * (10 * frame + j):.4f}'
                     for j, line in enumerate(lines)
                     if not line.startswith('DontCare')]
        (folder / f'{sample_id}.txt').write_text(
            ''.join(line + '\n' for line in lines))
    return str(folder)


@pytest.mark.slow  # end-to-end run of the tool
def test_eval_kitti_scores_a_perfect_submission_100(tmp_path):
    labels = _labels()
    gt = _write(tmp_path / 'label_2', labels)
    pred = _write(tmp_path / 'pred', labels, scored=True)
    out = str(tmp_path / 'results.json')
    result = run_tool([TOOL, gt, pred, '--out', out])
    assert 'Car AP_R40@0.70, 0.70, 0.70' in result.stdout
    with open(out) as f:
        results = json.load(f)
    assert len(results) == 3 * 4 * 3 * 2 * 2  # class type difficulty R loose
    for key, value in results.items():
        assert value == pytest.approx(100, abs=1e-4), key


@pytest.mark.slow  # end-to-end run of the tool
def test_eval_kitti_split_file_and_missing_prediction_file(tmp_path):
    from vitdense.evaluation.functional import (kitti_eval,
                                                read_kitti_label_dir)
    labels = _labels()
    gt = _write(tmp_path / 'label_2', labels)
    ids = list(labels)[2:]
    pred = _write(tmp_path / 'pred',
                  {i: labels[i] for i in ids if i != ids[-1]}, scored=True)
    split = tmp_path / 'val.txt'
    split.write_text('\n'.join(ids) + '\n')
    out = str(tmp_path / 'results.json')
    result = run_tool([TOOL, gt, pred, '--split-file', str(split),
                       '--classes', 'Car', '--metric', '3d', '--out', out])
    assert '1 of 13 frames have no prediction file' in result.stderr
    with open(out) as f:
        results = json.load(f)
    assert set(results) == {f'kitti/Car_3D_{d}_{r}{s}'
                            for d in ('easy', 'moderate', 'hard')
                            for r in ('R11', 'R40') for s in ('', '_loose')}
    _, expected = kitti_eval(read_kitti_label_dir(gt, ids),
                             read_kitti_label_dir(pred, ids),
                             classes=('Car',), eval_types=('3d',))
    assert results == {f'kitti/{k}': v for k, v in expected.items()}
    # the three cars of the frame without predictions are missed
    assert 80 < results['kitti/Car_3D_moderate_R40'] < 100


@pytest.mark.parametrize('case,error,message', [
    ('no_pred_dir', FileNotFoundError,
     'prediction folder .*nowhere does not exist'),
    ('missing_label', FileNotFoundError,
     r'1 of 2 frames have no label file in .*label_2: 000007'),
    ('empty_pred_dir', FileNotFoundError,
     'has no file of the 3 evaluated frames'),
    ('empty_split', ValueError, 'lists no frames'),
])
def test_eval_kitti_errors_name_the_problem(tmp_path, case, error, message):
    from tools.analysis_tools.eval_kitti import main
    labels = _labels(3)
    gt = _write(tmp_path / 'label_2', labels)
    pred = _write(tmp_path / 'pred', labels, scored=True)
    args = [gt, pred]
    split = tmp_path / 'val.txt'
    if case == 'no_pred_dir':
        args[1] = str(tmp_path / 'nowhere')
    elif case == 'missing_label':
        split.write_text('000001\n000007\n')
        args += ['--split-file', str(split)]
    elif case == 'empty_pred_dir':
        args[1] = _write(tmp_path / 'empty', {})
    else:
        split.write_text('\n')
        args += ['--split-file', str(split)]
    with pytest.raises(error, match=message):
        main(args)
