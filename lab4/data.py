"""The Kaggle dataset on disk, decoded once into a uint8 cache, and training batches from it.

Layout (argument --DR):
    DR/train/train_img/frame<N>.png   DR/train/train_label/frame<N>.png
    DR/val/val_img/frame<N>.png       DR/val/val_label/frame<N>.png
    DR/test/test_img/<k>/frame<N>.png DR/test/test_label/<k>/frame<N>.png   (k = 0..4)
Frames sort numerically by N; a label has the image's file name in the `<split>_label` folder.
Every image is converted to RGB and resized to (frame_H, frame_W) with PIL's bilinear filter,
as the template's torchvision Resize does on PIL images; values stay uint8 until batching.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import SEQ_LEN
from .errors import Lab4Error
from .files import atomic_path, write_text_atomic
from .progress import progress_bar

CACHE_VERSION = 1
_FRAME_RE = re.compile(r"^frame(\d+)\.png$", re.IGNORECASE)


# ---- locating files ------------------------------------------------------------------------
def resolve_root(DR: str | os.PathLike) -> Path:
    """The dataset root, accepting the common doubled folder (LAB4_Dataset/LAB4_Dataset)."""
    root = Path(DR).expanduser()
    if not root.is_dir():
        raise Lab4Error(f"--DR {root}: no such folder (expected the Kaggle dataset root holding train/ val/ test/)")
    if (root / "train").is_dir() or (root / "val").is_dir() or (root / "test").is_dir():
        return root
    inner = [d for d in root.iterdir() if d.is_dir() and any((d / s).is_dir() for s in ("train", "val", "test"))]
    if len(inner) == 1:
        return inner[0]
    raise Lab4Error(f"--DR {root}: no train/, val/ or test/ folder inside (expected DR/train/train_img/frame0.png, ...)")


def frame_number(path: Path) -> int:
    m = _FRAME_RE.match(path.name)
    if not m:
        raise Lab4Error(f"{path}: unexpected file name (expected frame<N>.png)")
    return int(m.group(1))


def list_frames(folder: Path) -> list[Path]:
    """PNG frames of a folder in numeric order (frame10 after frame9)."""
    if not folder.is_dir():
        raise Lab4Error(f"{folder}: missing folder (expected the Kaggle layout, see data/README.md)")
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    if not files:
        raise Lab4Error(f"{folder}: no PNG frames found")
    return sorted(files, key=frame_number)


def label_path(img_path: Path) -> Path:
    """The pose image of a frame: the `<split>_img` folder swapped for `<split>_label`."""
    parts = list(img_path.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].endswith("_img"):
            parts[i] = parts[i][: -len("_img")] + "_label"
            return Path(*parts)
    raise Lab4Error(f"{img_path}: not inside a <split>_img folder")


def paired_paths(img_dir: Path, label_dir: Path) -> tuple[list[Path], list[Path]]:
    """The frames of a split and their pose images, paired by file name; a frame without a pose
    image (or a pose image without a frame) is refused, naming the first such files."""
    imgs, labels = list_frames(img_dir), list_frames(label_dir)
    img_names, label_names = {p.name for p in imgs}, {p.name for p in labels}
    no_label = [p.name for p in imgs if p.name not in label_names]
    no_image = [p.name for p in labels if p.name not in img_names]
    if no_label or no_image:
        def first(names, where):
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            return f"{len(names)} missing from {where} ({shown})"
        sides = [first(no_label, label_dir.name)] if no_label else []
        sides += [first(no_image, img_dir.name)] if no_image else []
        raise Lab4Error(f"{img_dir.parent}: {len(imgs)} images in {img_dir.name}, {len(labels)} labels in "
                        f"{label_dir.name}; {'; '.join(sides)} (expected the same file names in both folders)")
    return imgs, [label_path(p) for p in imgs]


# ---- decoding ------------------------------------------------------------------------------
def resize_frame(im: Image.Image, H: int = 32, W: int = 64) -> np.ndarray:
    """A PIL image -> uint8 (3, H, W): converted to RGB, resized with PIL's bilinear filter (as the
    template's torchvision Resize does on PIL images). The one place the model's input size is made."""
    return np.asarray(im.convert("RGB").resize((W, H), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1).copy()


def load_frame(path: Path, H: int = 32, W: int = 64) -> np.ndarray:
    """One PNG -> uint8 (3, H, W). Grayscale/RGBA/palette images are converted to RGB."""
    try:
        with Image.open(path) as im:
            return resize_frame(im, H, W)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        raise Lab4Error(f"{path}: unreadable or truncated PNG ({e})") from None


def _load_many(args) -> np.ndarray:
    paths, H, W = args
    return np.stack([load_frame(p, H, W) for p in paths]) if paths else np.zeros((0, 3, H, W), np.uint8)


def decode_frames(paths: list[Path], H: int, W: int, workers: int = 1, desc: str = "decode") -> np.ndarray:
    """Decode and resize many PNGs in parallel -> uint8 (N, 3, H, W), with a progress bar."""
    out = np.empty((len(paths), 3, H, W), dtype=np.uint8)
    chunk = 256
    jobs = [(paths[i:i + chunk], H, W) for i in range(0, len(paths), chunk)]
    bar = progress_bar(total=len(paths), desc=desc, unit="png", leave=False, show=len(paths) >= 64)
    if workers <= 1 or len(jobs) == 1:
        results = map(_load_many, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_load_many, jobs)
    try:
        for i, arr in enumerate(results):
            out[i * chunk:i * chunk + len(arr)] = arr
            bar.update(len(arr))
    finally:
        bar.close()
        if workers > 1 and len(jobs) > 1:
            pool.shutdown(cancel_futures=True)
    return out


# ---- the cache -----------------------------------------------------------------------------
def fingerprint(paths: list[Path]) -> str:
    """Changes when any source file is added, removed, renamed, resized or touched."""
    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def default_cache_dir(root: Path) -> Path:
    here = root / ".lab4_cache"
    try:
        here.mkdir(exist_ok=True)
        probe = here / ".write_probe"
        probe.write_bytes(b"")
        probe.unlink()
        return here
    except OSError:  # read-only dataset (e.g. a Kaggle input folder): use the user cache
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lab4" / key


def cached_arrays(name: str, paths: list[Path], H: int, W: int, cache_dir: Path, workers: int,
                  shape: tuple | None = None) -> np.ndarray:
    """Decode `paths` once into cache_dir/<name>_<H>x<W>.npy; reuse while the fingerprint holds."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = cache_dir / f"{name}_{H}x{W}"
    meta_path, npy_path = base.with_suffix(".json"), base.with_suffix(".npy")
    fp = fingerprint(paths)
    if meta_path.exists() and npy_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") == fp and meta.get("version") == CACHE_VERSION:
                return np.load(npy_path)  # a writable in-memory array (288 MB for the real train split)
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt
    arr = decode_frames(paths, H, W, workers, desc=f"cache {name}")
    if shape is not None:
        arr = arr.reshape(shape + arr.shape[1:])
    with atomic_path(npy_path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    write_text_atomic(meta_path, json.dumps({"version": CACHE_VERSION, "fingerprint": fp, "count": len(paths)}))
    return arr


@dataclass
class Split:
    """Decoded frames of one split, uint8. train/val: images, labels (N, 3, H, W).
    test: images (S, 3, H, W) first frames, labels (S, SEQ_LEN, 3, H, W)."""
    name: str
    images: np.ndarray
    labels: np.ndarray


def load_split(DR, split: str, H: int = 32, W: int = 64, cache_dir=None, workers: int = 1) -> Split:
    """Load train, val or test through the cache (built on first use, with a progress bar)."""
    root = resolve_root(DR)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(root)
    if split in ("train", "val"):
        imgs, labels = paired_paths(root / split / f"{split}_img", root / split / f"{split}_label")
        return Split(split, cached_arrays(f"{split}_img", imgs, H, W, cache, workers),
                     cached_arrays(f"{split}_label", labels, H, W, cache, workers))
    if split != "test":
        raise Lab4Error(f"split {split!r}: expected train, val or test")
    img_root, label_root = root / "test" / "test_img", root / "test" / "test_label"
    if not img_root.is_dir() or not label_root.is_dir():
        raise Lab4Error(f"{root / 'test'}: expected test_img/<k>/ and test_label/<k>/ folders")
    seqs = sorted((d.name for d in img_root.iterdir() if d.is_dir()), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    if not seqs:
        raise Lab4Error(f"{img_root}: no sequence folders 0..4 found")
    firsts, label_paths = [], []
    for k in seqs:
        firsts.append(list_frames(img_root / k)[0])
        lp = list_frames(label_root / k)
        if len(lp) != SEQ_LEN:
            raise Lab4Error(f"{label_root / k}: {len(lp)} pose frames, expected {SEQ_LEN}")
        label_paths += lp
    images = cached_arrays("test_img", firsts, H, W, cache, workers)
    labels = cached_arrays("test_label", label_paths, H, W, cache, workers, shape=(len(seqs), SEQ_LEN))
    return Split("test", images, labels)


# ---- batches -------------------------------------------------------------------------------
class SequenceBatches:
    """Non-overlapping `seq_len`-frame training sequences of a flat frame array, batched.

    The whole uint8 array lives on the training device (288 MB for the real train split), so a
    batch is an index and a division: no PNG, no worker process, no host-to-device copy per step.
    The order of epoch e is a permutation seeded by (seed, e): resuming replays it exactly.
    """

    def __init__(self, split: Split, seq_len: int, device="cpu"):
        self.seq_len = seq_len
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)  # (N, 3, H, W) uint8
        self.labels = torch.from_numpy(np.ascontiguousarray(split.labels)).to(device)
        self.n_frames = len(self.images)
        self._check_length("--train_vi_len")

    def _check_length(self, flag: str) -> None:
        if self.n_frames < self.seq_len:
            raise Lab4Error(f"train split has {self.n_frames} frames, fewer than {flag} {self.seq_len}")

    def of_length(self, seq_len: int) -> "SequenceBatches":
        """The same frames (shared, not copied) cut into `seq_len`-frame sequences (--long_clip)."""
        other = copy.copy(self)
        other.seq_len = seq_len
        other._check_length("--long_clip")
        return other

    def num_sequences(self, partial: float = 1.0) -> int:
        return int(self.n_frames * partial) // self.seq_len

    def epoch_order(self, epoch: int, seed: int, partial: float = 1.0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(self.num_sequences(partial), generator=g)

    def frames_before(self, seq_ids: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """seq_ids, gaps (B,) -> the frame and pose `gaps` frames before each sequence's first (frame 0 of the
        split at the most), (B, 3, H, W) each float in [0, 1]: the appearance memory's frame with --memory_gap."""
        idx = (seq_ids.to(self.images.device) * self.seq_len - gaps.to(self.images.device)).clamp(min=0)   # (B,)
        return self.images[idx].float().div_(255), self.labels[idx].float().div_(255)

    def batch(self, seq_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """seq_ids (B,) -> frames, poses: (B, T, 3, H, W) float in [0, 1]."""
        idx = (seq_ids.to(self.images.device)[:, None] * self.seq_len
               + torch.arange(self.seq_len, device=self.images.device))          # (B, T)
        return self.images[idx].float().div_(255), self.labels[idx].float().div_(255)
