"""Cache-build decoding: PIL (what the package uses) against torchvision, per PNG at the Kaggle size.

    python benchmarks/bench_decode.py [--quick] [--json FILE]

The one-time cache build decodes every PNG and resizes it to 32x64 (lab4.data.load_frame). The
values must stay those of the template's `transforms.Resize((32, 64))` on PIL images, i.e. PIL's
bilinear resize. Candidates, one process, one PNG at a time, median of 3 passes over the files:

- PIL: `Image.open(path).convert("RGB").resize((64, 32), BILINEAR)` (lab4.data.load_frame)
- torchvision: `torchvision.io.decode_png(read_file(path), ImageReadMode.RGB)` then
  `transforms.v2.functional.resize(img, [32, 64], BILINEAR, antialias=True)` on the uint8 tensor
- torchvision decode, PIL resize (PIL.Image.fromarray of the decoded tensor)

and how far each is from PIL's values (max |difference| in 0..255 levels, share of equal values).
The PNGs: the first N train frames of data/synth-demo upscaled to 512x1024 (the Kaggle size), and
5 random-pixel 512x1024 PNGs for the equality check alone (where rounding differences show).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, add_common_args, apply_threads, median, stamp, write_json  # noqa: E402

H, W = 32, 64


def make_pngs(out: Path, n: int) -> list[Path]:
    from PIL import Image

    from lab4.data import list_frames
    from lab4.workbook import ensure_dataset
    src = ensure_dataset(ROOT / "data" / "synth-demo", "demo")
    imgs = list_frames(src / "train" / "train_img")
    paths = []
    for i, p in enumerate(imgs[:n]):
        with Image.open(p) as im:
            big = im.convert("RGB").resize((1024, 512), Image.BICUBIC)
        paths.append(out / f"{i}.png")
        big.save(paths[-1])
    return paths


def pil_decode_resize(path: Path) -> np.ndarray:
    from lab4.data import load_frame
    return load_frame(path, H, W)                                             # (3, H, W) uint8


def tv_decode_resize(path: Path) -> np.ndarray:
    from torchvision.io import ImageReadMode, decode_png, read_file
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resize
    img = decode_png(read_file(str(path)), mode=ImageReadMode.RGB)           # (3, 512, 1024) uint8
    return resize(img, [H, W], InterpolationMode.BILINEAR, antialias=True).numpy()


def tv_decode_pil_resize(path: Path) -> np.ndarray:
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_png, read_file
    img = decode_png(read_file(str(path)), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
    return np.asarray(Image.fromarray(img).resize((W, H), Image.BILINEAR)).transpose(2, 0, 1)


def random_pixel_check(tmp: Path) -> dict:
    """The hardest case for matching rounding: random pixels at the Kaggle size; max |difference| of
    torchvision's tensor resize from PIL's over 5 images."""
    from PIL import Image
    worst, differing = 0, 0.0
    for k in range(5):
        img = np.random.default_rng(k).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
        path = tmp / f"noise{k}.png"
        Image.fromarray(img).save(path)
        diff = np.abs(tv_decode_resize(path).astype(np.int16) - pil_decode_resize(path).astype(np.int16))
        worst, differing = max(worst, int(diff.max())), differing + float((diff > 0).mean()) / 5
    print(f"random-pixel 512x1024 PNGs: torchvision tensor resize max |diff| {worst}, "
          f"{100 * differing:.2f}% of values differ", flush=True)
    return {"max_abs_diff": worst, "differing_share": differing}


CANDIDATES = {"PIL decode + PIL resize (package)": pil_decode_resize,
              "torchvision decode_png + tensor resize (antialias)": tv_decode_resize,
              "torchvision decode_png + PIL resize": tv_decode_pil_resize}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--n", type=int, default=200, help="PNGs (default 200)")
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    n = 20 if a.quick else a.n
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_pngs(Path(tmp), n)
        reference = np.stack([pil_decode_resize(p) for p in paths])            # (n, 3, H, W): the template's values
        rows = []
        for name, fn in CANDIDATES.items():
            fn(paths[0])                                                       # imports, first-call set-up
            passes, out = [], None
            for _ in range(3):
                t0 = time.perf_counter()
                out = np.stack([fn(p) for p in paths])
                passes.append(time.perf_counter() - t0)
            diff = np.abs(out.astype(np.int16) - reference.astype(np.int16))
            rows.append({"candidate": name, "ms_per_png": 1000 * median(passes) / n,
                         "passes_s": passes, "max_abs_diff": int(diff.max()), "equal_share": float((diff == 0).mean())})
            print(f"{name:55s} {rows[-1]['ms_per_png']:6.2f} ms/PNG   max |diff| {rows[-1]['max_abs_diff']:3d}   "
                  f"equal {100 * rows[-1]['equal_share']:.2f}%", flush=True)
        noise = random_pixel_check(Path(tmp))
    base = rows[0]["ms_per_png"]
    for r in rows:
        r["speed_vs_pil"] = base / r["ms_per_png"]
    res = {**stamp(), **{"n_png": n, "png_size": [512, 1024], "out_size": [H, W], "candidates": rows, "random_pixels": noise, "quick": a.quick}}
    if a.json:
        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
