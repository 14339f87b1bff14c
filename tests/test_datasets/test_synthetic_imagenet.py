"""make_imagenet_shapes: distinct shapes, deterministic files, a BPE
vocabulary that transformers' RoBERTa tokenizer reads, and the generator
conventions (foreign folders refused, interrupted runs rewritten)."""
import json
import os.path as osp
import runpy

import numpy as np
import pytest

from vitdense.datasets.synthetic import (BPE_SPECIAL_TOKENS,
                                         COCO_SHAPES_CLASSES,
                                         IMAGENET_SHAPES_CLASSES,
                                         _shape_mask, ensure_dataset,
                                         make_imagenet_shapes,
                                         write_shapes_bpe)


def test_shape_kinds_are_distinct_filled_masks():
    masks = [_shape_mask(kind, 64, 64, 32, 32, 40, 0.3).astype(bool)
             for kind in range(1, len(IMAGENET_SHAPES_CLASSES) + 1)]
    for kind, mask in enumerate(masks, 1):
        assert 200 < mask.sum() < 64 * 64 / 2, kind
        for other, second in enumerate(masks[kind:], kind + 1):
            iou = (mask & second).sum() / (mask | second).sum()
            assert iou < 0.9, (IMAGENET_SHAPES_CLASSES[kind - 1],
                               IMAGENET_SHAPES_CLASSES[other - 1], iou)
    circle, ring, crescent = masks[0], masks[7], masks[8]
    assert circle[32, 32] and not ring[32, 32]  # a ring has a hole
    assert (ring <= circle).all() and (crescent <= circle).all()
    assert 0.2 < crescent.sum() / circle.sum() < 0.6


def test_imagenet_shapes_is_deterministic(tmp_path):
    a = make_imagenet_shapes(str(tmp_path / 'a'), num_train=10, num_val=3,
                             seed=4)
    b = make_imagenet_shapes(str(tmp_path / 'b'), num_train=10, num_val=3,
                             seed=4)
    for name in ('meta/train.txt', 'meta/val.txt', 'meta/bpe/vocab.json',
                 'meta/bpe/merges.txt', 'val/val_00000002.JPEG'):
        assert open(osp.join(a, name), 'rb').read() == \
            open(osp.join(b, name), 'rb').read(), name
    c = make_imagenet_shapes(str(tmp_path / 'c'), num_train=10, num_val=3,
                             seed=5)
    assert open(osp.join(a, 'meta/val.txt')).read() != \
        open(osp.join(c, 'meta/val.txt')).read()


def test_imagenet_shapes_counts_stay_balanced_for_odd_sizes(tmp_path):
    root = make_imagenet_shapes(str(tmp_path), num_train=23, num_val=7,
                                image_size=(40, 56))
    with open(osp.join(root, 'meta', 'train.txt')) as f:
        counts = np.bincount([int(line.split()[1]) for line in f],
                             minlength=10)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1
    import cv2
    image = cv2.imread(osp.join(root, 'val', 'val_00000000.JPEG'))
    assert image.shape == (40, 56, 3)


def test_bpe_vocabulary_loads_in_roberta_tokenizer(tmp_path):
    from transformers import RobertaTokenizerFast
    folder = write_shapes_bpe(str(tmp_path / 'bpe'))
    with open(osp.join(folder, 'vocab.json')) as f:
        vocab = json.load(f)
    assert [vocab[t] for t in BPE_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    vocab_file = osp.join(folder, 'vocab.json')
    merges_file = osp.join(folder, 'merges.txt')
    # transformers 5 takes the two files as vocab=/merges= (vocab_file= of
    # transformers 4 is ignored there) or as a from_pretrained folder
    for tokenizer in (RobertaTokenizerFast(vocab=vocab_file,
                                           merges=merges_file),
                      RobertaTokenizerFast.from_pretrained(folder)):
        assert len(tokenizer) == len(vocab)
        assert (tokenizer.bos_token_id, tokenizer.pad_token_id,
                tokenizer.eos_token_id, tokenizer.unk_token_id,
                tokenizer.mask_token_id) == (0, 1, 2, 3, 4)
        names = set(IMAGENET_SHAPES_CLASSES) | {
            c['name'] for c in COCO_SHAPES_CLASSES}
        for name in names:
            ids = tokenizer(name)['input_ids']
            assert ids[0] == 0 and ids[-1] == 2
            assert tokenizer.decode(ids, skip_special_tokens=True) == name
            prompt = tokenizer(f'a photo of a {name}.')['input_ids']
            # every word is one token: <s> a photo of a NAME . </s>
            assert tokenizer.convert_ids_to_tokens(prompt)[1:-1] == [
                'a', 'Ġphoto', 'Ġof', 'Ġa', 'Ġ' + name, '.']
            assert tokenizer.unk_token_id not in prompt


def _make_synthetic(repo_root, monkeypatch, *args):
    tool = osp.join(repo_root, 'tools', 'dataset_converters',
                    'make_synthetic.py')
    monkeypatch.setattr('sys.argv', [tool, *args])
    runpy.run_path(tool, run_name='__main__')


def test_make_synthetic_imagenet_rewrites_an_interrupted_generation(
        repo_root, monkeypatch, tmp_path):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    root = tmp_path / 'imagenet'
    monkeypatch.setattr('cv2.imwrite', interrupt)
    with pytest.raises(KeyboardInterrupt):
        make_imagenet_shapes(str(root), num_train=2, num_val=1)
    monkeypatch.undo()
    stale = root / 'train' / 'stale.JPEG'
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b'half-written')
    _make_synthetic(repo_root, monkeypatch, 'imagenet', str(root),
                    '--num-train', '3', '--num-val', '2')
    assert (root / '.complete').exists() and not stale.exists()
    assert len((root / 'meta' / 'train.txt').read_text().split('\n')) == 4
    assert sorted(p.name for p in (root / 'meta').iterdir()) == [
        'bpe', 'classes.txt', 'train.txt', 'val.txt']
    assert ensure_dataset('imagenet', str(root)) == str(root)


def test_imagenet_shapes_refuses_a_foreign_folder(repo_root, monkeypatch,
                                                  tmp_path):
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train' / 'n01440764').write_text('mine')
    with pytest.raises(FileExistsError, match='refusing'):
        make_imagenet_shapes(str(tmp_path), num_train=2, num_val=1)
    with pytest.raises(SystemExit, match='refusing'):
        _make_synthetic(repo_root, monkeypatch, 'imagenet', str(tmp_path),
                        '--force')
    assert [p.name for p in tmp_path.rglob('*')] == ['train', 'n01440764']
