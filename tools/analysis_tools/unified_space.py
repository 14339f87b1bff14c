"""Is a Uni-Perceiver v2 checkpoint's unified space separated or collapsed?

    python tools/analysis_tools/unified_space.py CONFIG [CHECKPOINT] \
        [--num-batches 4] [--out-dir DIR] [--cfg-options ...]

The generalist picks every target by cosine in one space (paper Eq. 4). When
the decoder maps all class names (and images) to one direction, every region
and image scores the same for every class, and the cosine's gradient vanishes
there, so training does not leave that state by itself. Losses do not show
it early (a collapsed classifier sits at ln K, as an untrained one); this
does. Per task it prints the class names' pairwise cosines (mean and max off
the diagonal) and, on ``--num-batches`` batches of the classification
validation set, the image embeddings' mean pairwise cosine, the spread
(std over classes) of the logits and the top-1 of those images. With
``--out-dir`` it draws each task's class-name cosine matrix.
Without a checkpoint the model keeps its initialisation.
"""
import argparse
import copy
import os
import os.path as osp
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner, load_checkpoint
from torch import Tensor

from vitdense.models.detectors.uni_perceiver_v2 import UniPerceiverV2
from vitdense.models.layers.uni_perceiver_layers import unified_logits
from vitdense.utils import register_all_modules


def pairwise_cosines(x: Tensor) -> Tensor:
    """(N, N) cosine similarities of the rows of ``x`` (N, C)."""
    x = F.normalize(x.float(), dim=-1)
    return x @ x.T


def off_diagonal(matrix: Tensor) -> Tensor:
    keep = ~torch.eye(len(matrix), dtype=torch.bool, device=matrix.device)
    return matrix[keep]


@torch.no_grad()
def name_stats(model: UniPerceiverV2, task: str) -> Dict[str, object]:
    """The task's class names: cosine matrix and its off-diagonal mean/max."""
    cos = pairwise_cosines(model.class_embeddings(task))
    off = off_diagonal(cos)
    return dict(names=list(model.class_names(task)), cosines=cos,
                mean_cos=off.mean().item() if len(off) else float('nan'),
                max_cos=off.max().item() if len(off) else float('nan'))


@torch.no_grad()
def classification_stats(model: UniPerceiverV2, dataloader,
                         num_batches: int) -> Dict[str, float]:
    """Image embeddings of ``num_batches`` batches against the class names."""
    names = model.class_embeddings('classification')
    images, labels = [], []
    for index, batch in enumerate(dataloader):
        if index == num_batches:
            break
        data = model.data_preprocessor(batch, False)
        feats = model.extract_feat(data['inputs'])
        images.append(model._image_embedding(feats, data['data_samples']))
        labels.append(torch.cat([s.gt_label for s in data['data_samples']]))
    if not images:
        raise ValueError('unified_space: the classification dataloader gave '
                         'no batch')
    images, labels = torch.cat(images), torch.cat(labels)
    logits = unified_logits(images, names, model.logit_scale)
    off = off_diagonal(pairwise_cosines(images))
    return dict(
        num_images=len(images),
        image_mean_cos=off.mean().item() if len(off) else float('nan'),
        logit_std=logits.std(1).mean().item(),
        top1=(logits.argmax(1) == labels.to(logits.device)).float().mean()
        .item() * 100)


def draw_cosines(stats: Dict[str, object], task: str, path: str) -> str:
    """The class-name cosine matrix as a labelled heat map."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names, cos = stats['names'], stats['cosines'].cpu().numpy()
    size = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(cos, vmin=-1, vmax=1, cmap='RdBu_r')
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f'{cos[i, j]:.2f}', ha='center', va='center',
                    fontsize=7)
    ax.set_title(f'{task}: class-name cosines, mean off-diagonal '
                 f'{stats["mean_cos"]:.3f}')
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build(cfg: Config, checkpoint: Optional[str]) -> UniPerceiverV2:
    model = MODELS.build(cfg.model)
    if not isinstance(model, UniPerceiverV2):
        raise TypeError(f'unified_space: the config builds a '
                        f'{type(model).__name__}, not a UniPerceiverV2')
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    else:
        model.init_weights()
    return model.eval()


def classification_loader(cfg: Config):
    extra = cfg.get('val_cfg', {}).get('extra_tasks', {})
    if 'classification' not in extra:
        return None
    return Runner.build_dataloader(
        copy.deepcopy(extra['classification']['dataloader']), seed=0)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--num-batches', type=int, default=4,
                        help='classification validation batches to embed')
    parser.add_argument('--out-dir', help='draw the cosine matrices here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = build(cfg, args.checkpoint)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
    for task in model.task_classes:
        stats = name_stats(model, task)
        print(f'{task}: {len(stats["names"])} class names, pairwise cosine '
              f'mean {stats["mean_cos"]:.4f}, max {stats["max_cos"]:.4f}')
        if args.out_dir:
            path = draw_cosines(stats, task,
                                osp.join(args.out_dir, f'{task}_names.png'))
            print(f'  drawn: {path}')
    loader = classification_loader(cfg)
    if loader is not None and 'classification' in model.task_classes:
        stats = classification_stats(model, loader, args.num_batches)
        print(f'classification images ({stats["num_images"]}): pairwise '
              f'cosine mean {stats["image_mean_cos"]:.4f}, logit std over '
              f'classes {stats["logit_std"]:.4f}, top-1 {stats["top1"]:.1f}')


if __name__ == '__main__':
    main()
