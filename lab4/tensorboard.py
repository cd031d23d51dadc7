"""--tensorboard: the run's per-epoch metrics and a few validation frames as TensorBoard events in
<save_root>/tensorboard (`tensorboard --logdir runs/`, or `make tensorboard`). metrics.csv stays
the source of truth; this is a view of it. Needs the optional `tensorboard` package."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import LAST_SCORED
from .errors import Lab4Error

SCALARS = {"loss": "train/loss", "mse": "train/mse", "kl": "train/kl", "beta": "schedule/beta",
           "tfr": "schedule/tfr", "lr": "schedule/lr", "teacher_forced": "schedule/teacher_forced",
           "val_psnr": "val/psnr", "val_psnr_min": "val/psnr_min", "copy_first_psnr": "val/copy_first_psnr"}
FRAMES = (1, 50, 150, 300, LAST_SCORED)   # validation frames shown (those the rollout reaches)


def require():
    """torch's SummaryWriter class, or one line saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise Lab4Error("--tensorboard: the tensorboard package is not installed "
                        "(pip install tensorboard, or pip install -e '.[tensorboard]')") from None
    return SummaryWriter


def open_writer(save_root, start_epoch: int):
    """A SummaryWriter on <save_root>/tensorboard; a resumed run drops events after start_epoch
    (those of the interrupted attempt), so each epoch appears once."""
    return require()(str(Path(save_root) / "tensorboard"), purge_step=start_epoch + 1 if start_epoch else None)


def log_epoch(writer, row: dict) -> None:
    """One metrics.csv row -> scalars at step = epoch (NaN validations are skipped)."""
    for key, tag in SCALARS.items():
        value = row.get(key)
        if value is not None and np.isfinite(value):
            writer.add_scalar(tag, float(value), int(row["epoch"]))
    writer.flush()


def log_validation_frames(writer, pred, val_split, epoch: int) -> None:
    """Rows of prediction | ground truth | pose at a few frame indices, one image per validation."""
    from .plots import side_by_side
    T = len(pred)
    idx = [t for t in FRAMES if t < T] or [T - 1]
    strips = side_by_side(pred[idx], val_split.images[:T][idx], val_split.labels[:T][idx], scale=2)  # (k, h, w, 3)
    writer.add_image("val/prediction|truth|pose", np.concatenate(list(strips), axis=0), epoch, dataformats="HWC")
    writer.flush()
