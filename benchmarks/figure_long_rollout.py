"""Redraw reports/figures/long_rollout_per_frame.png from committed experiments (benchmarks/experiments):
quick's per-frame PSNR over the 630-frame rollout on the two held-out sets: before the memory, with the
memory taken from the clip's first frame in training (3 x 93 steps on 12-frame clips), and as quick is
now (the memory following the pose, taken from up to 300 frames before the clip: --memory_gap 300).

    python benchmarks/figure_long_rollout.py [--out PNG]

Each curve is the mean of the named runs (seeds and sections in its label); the runs of one panel
come from one CPU unless the label says otherwise (a seed pairs runs only on one machine).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
EXPERIMENTS = ROOT / "benchmarks" / "experiments"

# (label, experiment file(s), recipe, seeds, training clip length)
PANELS = {
    "stripes": [
        ("quick without the memory (3 x 70, 16-frame clips; seeds 1-2, 6o, another CPU)",
         "6o_stripes_memory_bf16_seeds_1_2.json", "quick, no memory", (1, 2), 16),
        ("the memory from the clip's first frame, 3 x 93 on 12-frame clips (seeds 2-4, 6w)",
         "6w_stripes_memory_3x93_12_frame_clips.json", "quick, appearance memory", (2, 3, 4), 12),
        ("quick now: the memory following the pose, from up to 300 frames back (seeds 2-4, 6z)",
         "6z_stripes_memory_gap_300.json", "quick, memory following the pose from up to 300 frames back",
         (2, 3, 4), 12),
    ],
    "travel": [
        ("quick without the memory (3 x 70, 16-frame clips; seeds 1-2, 6p, another CPU)",
         "6p_travel_memory_bf16_seeds_1_2.json", "quick, no memory", (1, 2), 16),
        ("the memory from the clip's first frame, 3 x 93 on 12-frame clips (seeds 3-4, 6x)",
         "6x_travel_memory_3x93_12_frame_clips.json", "quick, appearance memory", (3, 4), 12),
        ("quick now: the memory following the pose, from up to 300 frames back (seeds 3-4, 6za)",
         "6za_travel_memory_gap_300.json", "quick, memory following the pose from up to 300 frames back",
         (3, 4), 12),
    ],
}


def panel(curves: list) -> dict:
    """One held-out set's runs, relabelled, in the shape bench_quality.plot_per_frame draws."""
    runs, doc = [], None
    for label, files, recipe, seeds, clip in curves:
        for name in (files,) if isinstance(files, str) else files:
            doc = json.loads((EXPERIMENTS / name).read_text())
            runs += [dict(r, recipe=label) for r in doc["runs"] if r["recipe"] == recipe and r["seed"] in seeds
                     and r["config"]["train_vi_len"] == clip and "final_per_frame" in r]
        if sum(r["recipe"] == label for r in runs) != len(seeds):
            raise SystemExit(f"{label}: expected {len(seeds)} runs with a per-frame curve")
    return dict(data=doc["data"], copy_first_psnr=doc["copy_first_psnr"], runs=runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "figures" / "long_rollout_per_frame.png"))
    a = ap.parse_args(argv)
    from bench_quality import plot_per_frame
    plot_per_frame([panel(c) for c in PANELS.values()], a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
