"""Procedural "synthetic dance" dataset in the exact on-disk layout of the Lab 4 Kaggle data.

One man (light-blue long-sleeve shirt, dark trousers) dances in a studio: a light wall above a
greyer floor, a mild lighting gradient, an optional soft shadow; he dances in place and walks or
runs across the frame.  The look varies per video (tones, horizon, light, body size, limb
thickness, tempo) so that nothing is tuned to one appearance.  The held-out styles (STYLES) move
more ("travel") or add fine detail to keep over a long rollout ("stripes": dark bands about one
model pixel wide across a light shirt).  The label of each frame is the
same 2-D skeleton drawn OpenPose-style on white.  Every frame is a deterministic function of (its
pose, the video's appearance), so a model given frame 0 and the poses can predict the rest.  Layout written under OUT (see LAB4_SPEC.md section 1):

    train/train_img|train_label/frame%06d.png     n_train frames, several videos concatenated
    val/val_img|val_label/frame%06d.png           one video of n_val frames
    test/test_img/<k>/frame000000.png             first frame only, k = 0..n_test-1
    test/test_label/<k>/frame%06d.png             test_len pose frames per sequence
    test_solution.npy                             uint8 (n_test, test_len, 3, 32, 64) ground truth
    synth.json                                    preset, seed, resolution, counts
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import pathlib
import shutil
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from .config import N_TEST_SEQUENCES, SEQ_LEN
from .data import resize_frame
from .errors import Lab4Error
from .files import atomic_path, write_text_atomic
from .progress import progress_bar


@dataclass(frozen=True)
class SynthPreset:
    n_train: int      # train frames (flat folder)
    n_val: int        # val frames (one video)
    n_test: int       # test sequences
    test_len: int     # label frames per test sequence
    height: int       # native PNG height
    width: int        # native PNG width


PRESETS: dict[str, SynthPreset] = {
    "mini": SynthPreset(320, SEQ_LEN, N_TEST_SEQUENCES, SEQ_LEN, 128, 256),
    "demo": SynthPreset(3000, SEQ_LEN, N_TEST_SEQUENCES, SEQ_LEN, 256, 512),
    "full": SynthPreset(23410, SEQ_LEN, N_TEST_SEQUENCES, SEQ_LEN, 512, 1024),
}
MODEL_HW = (32, 64)   # what the model's loader resizes every frame to
CHUNK = 48            # frames per worker task

# ---------------------------------------------------------------- pose parameters (per frame)
# X: hip-centre x as a fraction of the width; DROP: hip drop; YAW: turn about the vertical axis
# (0 = facing the camera); LEAN: forward torso tilt; HEAD: head roll.  Per arm (left, right):
# abduction, flexion of the upper arm, then of the forearm (absolute angles, radians).  Per
# foot: sideways offset, lift, forward offset.  Lengths are in units of the body height.
X, DROP, YAW, LEAN, HEAD = range(5)
ARM = (5, 9)
FOOT = (13, 16)
NP = 19
SIDES = (1.0, -1.0)   # person's left (+X) and right
NEUTRAL = np.array([0.5, 0, 0, 0, 0, .12, .05, .10, .25, .12, .05, .10, .25, 0, 0, 0, 0, 0, 0])

# Body geometry (units of body height, Y up, Z towards the camera at yaw 0).
ANKLE_H, THIGH, SHIN, HIP_H = 0.045, 0.25, 0.245, 0.52
UPPER_ARM, FOREARM, HIP_HALF = 0.165, 0.15, 0.055
HEAD_RX, HEAD_RY = 0.056, 0.068
# nose, right eye, left eye, right ear, left ear relative to the head centre (X, Y, Z)
FACE = [(0, -0.005, HEAD_RX), (-0.024, 0.012, 0.85 * HEAD_RX), (0.024, 0.012, 0.85 * HEAD_RX),
        (-HEAD_RX, 0, 0), (HEAD_RX, 0, 0)]

# OpenPose COCO-18: 0 nose 1 neck 2-4 R shoulder/elbow/wrist 5-7 L ... 8-10 R hip/knee/ankle
# 11-13 L ... 14/15 R/L eye 16/17 R/L ear.  Extra points: 18 head, 19 hip centre, 20 shoulder
# centre, 21/22 L/R toe, 23/24 L/R hand.
LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
         (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
OP_COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
             (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
             (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
LIMB_A, LIMB_B = np.array(LIMBS).T
_COS, _SIN = (f(np.linspace(0, 2 * np.pi, 20, endpoint=False))[None] for f in (np.cos, np.sin))
PASTEL = [tuple(int(0.6 * c + 0.4 * 255) for c in col) for col in OP_COLORS]  # cv2 alpha 0.6


@dataclass(frozen=True)
class Video:
    """Everything constant within one video: body, appearance, per-frame pose parameters."""
    params: np.ndarray      # (n, NP) float64
    height_frac: float      # body height / image height
    ground_frac: float      # ground line / image height
    shoulder: float         # shoulder half-width
    shirt: tuple
    trousers: tuple
    skin: tuple
    hair: tuple
    studio: tuple           # (wall RGB, floor RGB, horizon fraction, cove fraction): _background
    light: tuple            # (gain per unit x, gain per unit y) of the lighting gradient
    shadow: float           # floor-shadow darkness (0: none)
    shadow_dx: float        # shadow offset sideways, in body heights (light from one side)
    limb: float             # limb-thickness factor
    stripes: tuple | None = None   # (stripe RGB, period in body heights) across the shirt; None: plain


# ---------------------------------------------------------------- choreography
def _ease(s):
    """0 -> 1 with zero velocity at both ends."""
    return s - np.sin(2 * np.pi * s) / (2 * np.pi)


def _move(name: str, t: np.ndarray, d: int, o: dict, x0: float) -> np.ndarray:
    """Raw (un-blended) pose parameters of one move for local frames t = 0..d-1."""
    p = np.tile(NEUTRAL, (len(t), 1))
    p[:, X] = x0
    s, ph = t / d, 2 * np.pi * t / o["period"]
    la, ra, lf, rf = ARM[0], ARM[1], FOOT[0], FOOT[1]
    if name == "idle":
        p[:, X] += 0.004 * np.sin(ph / 2)
        p[:, HEAD] = 0.06 * np.sin(ph / 3)
        p[:, [la, ra]] += 0.05 * np.sin(ph)[:, None]
    elif name in ("walk", "walk_across", "run_across"):
        run = 1.0 if name == "run_across" else 0.0   # running: longer strides, higher feet, bent arms
        p[:, lf + 1] = (0.06 + 0.06 * run) * np.maximum(0, np.sin(ph))
        p[:, rf + 1] = (0.06 + 0.06 * run) * np.maximum(0, -np.sin(ph))
        p[:, la + 1] = 0.05 - (0.4 + 0.3 * run) * np.sin(ph)
        p[:, ra + 1] = 0.05 + (0.4 + 0.3 * run) * np.sin(ph)
        p[:, [la + 3, ra + 3]] = 0.45 + 0.7 * run + 0.2 * np.abs(np.sin(ph))[:, None]
        p[:, DROP] = (0.012 + 0.02 * run) * (1 - np.cos(2 * ph)) / 2
        p[:, LEAN] = 0.12 * run
        if name != "walk":
            p[:, X] = x0 + (o["x1"] - x0) * _ease(s)
            p[:, YAW] = np.sign(o["x1"] - x0) * np.pi / 2
            p[:, lf + 2] = (0.11 + 0.08 * run) * np.cos(ph)
            p[:, rf + 2] = -(0.11 + 0.08 * run) * np.cos(ph)
    elif name == "turn":   # full spin, or half turn to the back and back again
        half = np.pi * (1 - np.cos(2 * np.pi * s)) / 2
        p[:, YAW] = o["dir"] * (2 * np.pi * _ease(s) if o["full"] else half)
        p[:, lf + 1] = 0.03 * np.maximum(0, np.sin(2 * ph))
        p[:, rf + 1] = 0.03 * np.maximum(0, -np.sin(2 * ph))
        p[:, [la, ra]] = 0.35
    elif name == "squat":
        k = (1 - np.cos(2 * np.pi * o["reps"] * s)) / 2
        p[:, YAW], p[:, DROP], p[:, LEAN] = o["yaw"], 0.17 * k, 0.3 * k
        p[:, [la + 1, ra + 1]] = (0.05 + 1.45 * k)[:, None]
        p[:, [la + 3, ra + 3]] = (0.25 + 1.3 * k)[:, None]
        p[:, [lf, rf]] = 0.05
    elif name == "lunge":  # alternate the leading leg each repetition, three-quarter view
        r = o["reps"] * s
        k = np.sin(np.pi * (r % 1)) ** 2
        lead = (np.floor(r) % 2 == 0)
        p[:, YAW], p[:, DROP], p[:, LEAN] = o["yaw"], 0.13 * k, 0.08 * k
        p[:, lf + 2] = np.where(lead, 0.3, -0.13) * k
        p[:, rf + 2] = np.where(lead, -0.13, 0.3) * k
        p[:, [la, ra]] = (0.12 + 0.5 * k)[:, None]
        p[:, [la + 2, ra + 2]] = (0.10 + 0.7 * k)[:, None]
    elif name == "arms":   # arm raises: sideways, forwards, or alternating
        k = (1 - np.cos(2 * np.pi * o["reps"] * s)) / 2
        k2 = (1 - np.cos(2 * np.pi * o["reps"] * s + np.pi)) / 2 if o["style"] == "alt" else k
        joint = 1 if o["style"] == "front" else 0
        p[:, la + joint] += 2.7 * k
        p[:, la + joint + 2] += 2.75 * k
        p[:, ra + joint] += 2.7 * k2
        p[:, ra + joint + 2] += 2.75 * k2
    elif name == "wave":   # one arm up, forearm swinging
        a = ARM[o["side"]]
        p[:, a] = 2.3
        p[:, a + 2] = 2.75 + 0.35 * np.sin(2 * ph)
    return p


MOVES = ["idle", "walk", "walk_across", "run_across", "turn", "squat", "lunge", "arms", "wave"]
WEIGHTS = [0.06, 0.10, 0.18, 0.10, 0.12, 0.12, 0.10, 0.14, 0.08]
SPEED = {"walk_across": 0.0022, "run_across": 0.0045}   # hip travel per frame (fraction of the width)


@dataclass(frozen=True)
class Style:
    """How the videos move and dress (the same random draws for every style, other values)."""
    weights: tuple        # how often each of MOVES is chosen
    yaws: tuple           # turns a move may start from (radians; four values)
    shirt: tuple          # shirt RGB before the studio light
    trousers_gain: tuple  # range of the trousers' brightness factor
    stripes: tuple | None = None   # (stripe RGB, period range in body heights); None: a plain shirt


STYLES = {
    "demo": Style(tuple(WEIGHTS), (0.0, 0.0, -0.6, 0.6), (150, 190, 228), (0.7, 1.5)),
    # held-out data for the long rollout (issue 26): mostly travel and turns, a brighter shirt over
    # darker trousers (more appearance to keep), turns up to 1.1 rad
    "travel": Style((0.02, 0.06, 0.26, 0.16, 0.20, 0.06, 0.10, 0.08, 0.06), (0.0, -0.6, 0.6, 1.1),
                    (120, 178, 245), (0.45, 0.9)),
    # held-out data with fine detail to keep (issue 26): the travel choreography in a shirt with dark
    # horizontal stripes about one model pixel wide, the detail that fades first in a long rollout
    "stripes": Style((0.02, 0.06, 0.26, 0.16, 0.20, 0.06, 0.10, 0.08, 0.06), (0.0, -0.6, 0.6, 1.1),
                     (214, 206, 190), (0.45, 0.9), ((36, 52, 110), (0.07, 0.10))),
}


def _choreography(n: int, rng: np.random.Generator, tempo: float, style: Style = STYLES["demo"]) -> np.ndarray:
    """(n, NP) pose parameters: random moves joined by cosine blends of their targets."""
    out, prev = [], np.tile(NEUTRAL, 1)
    prev[X] = rng.uniform(0.38, 0.62)
    total = 0
    while total < n:
        name = MOVES[rng.choice(len(MOVES), p=list(style.weights))]
        o = {"period": 36 / tempo, "dir": rng.choice([-1, 1]), "full": rng.random() < 0.5,
             "reps": int(rng.integers(2, 4)), "yaw": rng.choice(style.yaws),
             "style": rng.choice(["side", "front", "alt"]), "side": int(rng.integers(2))}
        d = int(rng.integers(70, 170) / tempo)
        if name in SPEED:   # travel to the far side: up to 0.2 / 0.8 of the width
            far = 0.8 if prev[X] < 0.5 else 0.2
            o["x1"] = rng.uniform(*sorted((far, 0.5 + 0.6 * (far - 0.5))))
            if name == "run_across":
                o["period"] = 22 / tempo
            d = int((abs(o["x1"] - prev[X]) / SPEED[name] + 30) / tempo)
        if name == "lunge":
            o["yaw"] = o["dir"] * 0.8
        raw = _move(name, np.arange(d, dtype=float), d, o, prev[X])
        T = min(int(18 / tempo), d // 3)
        w = (0.5 - 0.5 * np.cos(np.pi * np.arange(T) / T))[:, None]
        raw[:T] = prev + w * (raw[:T] - prev)
        out.append(raw)
        total += d
        prev = raw[-1].copy()
        prev[YAW] = math.remainder(prev[YAW], 2 * np.pi)   # same look, no unwinding later
    return np.concatenate(out)[:n]


def make_video(n: int, seed, style: str = "demo") -> Video:
    """A video's body, appearance (constant) and choreography; `seed` is an int or int tuple."""
    rng, look = np.random.default_rng(seed), STYLES[style]
    light = rng.uniform(0.82, 1.12)
    skin = np.array([222, 176, 142]) * rng.uniform(0.72, 1.03) + rng.normal(0, 5, 3)
    tint = rng.normal(0, 2.5, 3)                               # warm or cool studio light
    wall = rng.uniform(236, 252) + tint
    floor = wall - rng.uniform(22, 55) + rng.normal(0, 2, 3)  # a light-grey floor, never white
    horizon = rng.uniform(0.55, 0.70)
    v = Video(
        params=_choreography(n, rng, tempo=rng.uniform(0.8, 1.25), style=look),
        height_frac=rng.uniform(0.50, 0.68), ground_frac=rng.uniform(max(0.80, horizon + 0.1), 0.88),
        shoulder=rng.uniform(0.105, 0.125),
        shirt=_rgb(np.array(look.shirt) * light + rng.normal(0, 6, 3)),
        trousers=_rgb(np.array([42, 46, 62]) * rng.uniform(*look.trousers_gain) + rng.normal(0, 4, 3)),
        skin=_rgb(skin), hair=_rgb(np.array([45, 32, 25]) * rng.uniform(0.6, 1.6)),
        studio=(_rgb(wall), _rgb(floor), round(float(horizon), 4), round(float(rng.uniform(0.01, 0.05)), 4)),
        light=(round(float(rng.uniform(-0.08, 0.08)), 4), round(float(rng.uniform(-0.07, 0.0)), 4)),
        shadow=float(rng.uniform(0.05, 0.2)) if rng.random() < 0.75 else 0.0,
        shadow_dx=float(rng.uniform(-0.15, 0.15)), limb=float(rng.uniform(0.8, 1.15)))
    if look.stripes is None:   # drawn last: the plain styles' random stream is as before
        return v
    colour, period = look.stripes
    return replace(v, stripes=(_rgb(np.array(colour) * light + rng.normal(0, 6, 3)),
                               round(float(rng.uniform(*period)), 4)))


def _rgb(c) -> tuple:
    return tuple(int(v) for v in np.clip(np.rint(c), 0, 255))


# ---------------------------------------------------------------- skeleton
def _dir(abd: float, flex: float, side: float) -> np.ndarray:
    """Unit vector of a limb hanging down, raised sideways by `abd` and forwards by `flex`."""
    return np.array([side * math.sin(abd) * math.cos(flex), -math.cos(abd) * math.cos(flex),
                     math.sin(flex)])


def _knee(hip, ankle, hint):
    """Two-bone inverse kinematics: knee position bending towards `hint`."""
    v = ankle - hip
    d = min(np.linalg.norm(v), THIGH + SHIN - 1e-6)
    u = v / max(np.linalg.norm(v), 1e-9)
    a = (THIGH ** 2 - SHIN ** 2 + d ** 2) / (2 * d)
    perp = hint - u * (hint @ u)
    return hip + u * a + perp / np.linalg.norm(perp) * math.sqrt(max(THIGH ** 2 - a * a, 0.0))


def skeleton(p: np.ndarray, v: Video, height: int, width: int):
    """Image-space points (25, 2) and depths (25,) for one frame's parameters `p`."""
    P = np.zeros((25, 3))
    C = np.array([0.0, HIP_H - p[DROP], 0.0])
    cl, sl = math.cos(p[LEAN]), math.sin(p[LEAN])

    def up(x, y, z=0.0):  # upper-body point: tilted forward by LEAN about the hip centre
        return C + np.array([x, y * cl - z * sl, y * sl + z * cl])

    cr, sr = math.cos(p[HEAD]), math.sin(p[HEAD])   # head roll about the neck
    head = np.array([-0.09 * sr, 0.31 + 0.09 * cr])
    P[1], P[20], P[19], P[18] = up(0, 0.31), up(0, 0.285), C, up(*head)
    for i, (fx, fy, fz) in zip((0, 14, 15, 16, 17), FACE):
        P[i] = up(*(head + [fx * cr - fy * sr, fx * sr + fy * cr]), fz)
    for k, s in enumerate(SIDES):   # k = 0 left, 1 right
        sh, el, wr, hip, kn, an = (5, 6, 7, 11, 12, 13) if k == 0 else (2, 3, 4, 8, 9, 10)
        a, f = ARM[k], FOOT[k]
        P[sh] = up(s * v.shoulder, 0.285)
        P[el] = P[sh] + UPPER_ARM * _dir(p[a], p[a + 1], s)
        fore = _dir(p[a + 2], p[a + 3], s)
        P[wr] = P[el] + FOREARM * fore
        P[23 + k] = P[wr] + 0.028 * fore
        P[hip] = C + [s * HIP_HALF, 0, 0]
        P[an] = [s * (HIP_HALF + p[f] + 0.01), ANKLE_H + p[f + 1], p[f + 2]]
        P[kn] = _knee(P[hip], P[an], np.array([s * 0.35, 0, 1.0]))
        P[21 + k] = P[an] + [0, -0.03, 0.07]
    cy, sy = math.cos(p[YAW]), math.sin(p[YAW])
    hb = v.height_frac * height
    xy = np.stack([p[X] * width + hb * (P[:, 0] * cy + P[:, 2] * sy),
                   v.ground_frac * height - hb * P[:, 1]], 1)
    return xy, -P[:, 0] * sy + P[:, 2] * cy


# ---------------------------------------------------------------- drawing
@lru_cache(maxsize=8)
def _background(height: int, width: int, studio: tuple) -> Image.Image:
    """Studio: a light wall above a greyer floor, joined by a soft cove at the horizon."""
    wall, floor, horizon, cove = (np.array(studio[0], float), np.array(studio[1], float), *studio[2:])
    y = np.linspace(0, 1, height)[:, None, None]                      # (H, 1, 1)
    w = np.clip((y - horizon) / cove + 0.5, 0, 1)                     # 0 on the wall, 1 on the floor
    g = wall * (1 - w) + floor * w - 10 * np.clip(y - horizon, 0, 1)  # the floor darkens towards the camera
    return Image.fromarray(np.rint(np.repeat(g, width, 1)).clip(0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def _lighting(height: int, width: int, light: tuple) -> np.ndarray:
    """Multiplicative gain (H, W, 1) of a mild lighting gradient across the frame."""
    gx, gy = light
    y, x = np.linspace(-0.5, 0.5, height)[:, None], np.linspace(-0.5, 0.5, width)[None]
    return (1 + gx * x + gy * y)[..., None]


def _seg(dr, a, b, w, col):
    """Thick segment with round end caps."""
    r = w / 2
    dr.line([tuple(a), tuple(b)], fill=col, width=max(1, int(round(w))))
    for q in (a, b):
        dr.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=col)


def render_frame(p: np.ndarray, v: Video, height: int, width: int, skel=None) -> Image.Image:
    """The RGB frame for pose parameters `p` of video `v` (deterministic)."""
    painted = v
    if v.stripes is not None:   # draw the shirt in a key colour, striped below
        v = replace(v, shirt=SHIRT_KEY)
    xy, dep = skel or skeleton(p, v, height, width)
    hb = v.height_frac * height
    img = _background(height, width, v.studio).copy()
    dr = ImageDraw.Draw(img)
    if v.shadow > 0:   # soft floor shadow: concentric ellipses, darker towards the centre
        cx = (xy[10, 0] + xy[13, 0]) / 2 + v.shadow_dx * hb
        gy = v.ground_frac * height + 0.035 * hb
        rx = abs(xy[10, 0] - xy[13, 0]) / 2 + 0.13 * hb
        floor = np.array(v.studio[1], float)
        for i, f in enumerate((1.0, 0.8, 0.6, 0.4)):
            ry = 0.03 * hb * f
            dr.ellipse([cx - rx * f, gy - ry, cx + rx * f, gy + ry],
                       fill=_rgb(floor * (1 - v.shadow * (0.4 + 0.2 * i))))
    L = lambda f: f * hb * v.limb   # noqa: E731  (widths scale with the body)
    items = []   # (depth, kind, args) drawn far to near
    for k in range(2):
        sh, el, wr, hip, kn, an = (5, 6, 7, 11, 12, 13) if k == 0 else (2, 3, 4, 8, 9, 10)
        items += [(dep[[hip, kn]].mean(), "seg", (xy[hip], xy[kn], L(0.078), v.trousers)),
                  (dep[[kn, an]].mean(), "seg", (xy[kn], xy[an], L(0.06), v.trousers)),
                  (dep[an] + 0.01, "seg", (xy[an], xy[21 + k], L(0.045), (30, 30, 34))),
                  (dep[[sh, el]].mean() + 0.002, "seg", (xy[sh], xy[el], L(0.052), v.shirt)),
                  (dep[[el, wr]].mean() + 0.002, "seg", (xy[el], xy[wr], L(0.044), v.shirt)),
                  (dep[wr] + 0.003, "dot", (xy[23 + k], L(0.03), v.skin))]
    items.append((dep[19] - 0.001, "torso", None))
    items.sort(key=lambda it: it[0])
    for d, kind, args in items:
        if kind == "seg":
            _seg(dr, *args)
        elif kind == "dot":
            (x, y), r, col = args
            dr.ellipse([x - r, y - r, x + r, y + r], fill=col)
        else:
            _draw_torso(dr, xy, p, v, hb)
    lit = np.asarray(img, np.float32)
    if v.stripes is not None:
        lit = _stripe_shirt(lit, painted, xy[19, 1], hb)
    lit = lit * _lighting(height, width, v.light)
    return Image.fromarray(np.rint(lit).clip(0, 255).astype(np.uint8))


SHIRT_KEY = (255, 0, 255)   # drawn where a striped shirt goes; no other part of a frame is magenta


def _stripe_shirt(rgb: np.ndarray, v: Video, hip_y: float, hb: float) -> np.ndarray:
    """(H, W, 3) float frame with the shirt's key-coloured pixels painted: shirt, stripe, shirt, ...

    Bands are horizontal, `period` body heights apart and counted up from the hip, so they ride with
    the body as it travels, turns and squats."""
    colour, period = v.stripes
    y = np.arange(rgb.shape[0], dtype=np.float32)[:, None]                 # (H, 1)
    band = np.floor((hip_y - y) / (period * hb)).astype(int) % 2 == 1      # (H, 1)
    shirt = (rgb == np.array(SHIRT_KEY, np.float32)).all(-1)                # (H, W)
    out = rgb.copy()
    out[shirt] = v.shirt
    out[shirt & band] = colour
    return out


def _draw_torso(dr, xy, p, v: Video, hb: float):
    """Pelvis (trousers), shirt torso, neck and head, in that order."""
    cy, sy = abs(math.cos(p[YAW])), abs(math.sin(p[YAW]))
    def width(half, depth):   # projected half-width of an elliptic cross-section
        return hb * math.hypot(half * cy, depth * sy)

    C, S = xy[19], xy[20]
    axis = (S - C) / max(np.linalg.norm(S - C), 1e-6)
    n = np.array([-axis[1], axis[0]])
    hw_h, hw_w, hw_s = width(0.085, 0.06), width(0.082, 0.058), width(v.shoulder + 0.02, 0.065)
    low, waist = C - axis * 0.05 * hb, C + axis * 0.04 * hb
    pelvis = (waist + n * hw_w, low + n * hw_h, low - n * hw_h, waist - n * hw_w)
    dr.polygon([tuple(q) for q in pelvis], fill=v.trousers)
    top = S + axis * 0.025 * hb
    shirt = (top + n * hw_s * 0.55, S + n * hw_s, waist + n * hw_w, waist - n * hw_w,
             S - n * hw_s, top - n * hw_s * 0.55)
    dr.polygon([tuple(q) for q in shirt], fill=v.shirt)
    _seg(dr, xy[1], xy[1] + (xy[18] - xy[1]) * 0.5, 0.045 * hb, v.skin)
    (hx, hy), rx, ry = xy[18], width(HEAD_RX, 0.062), HEAD_RY * hb
    # hair: the whole head; face: a skin ellipse that slides sideways and narrows as he turns
    dr.ellipse([hx - rx * 1.04, hy - ry * 1.08, hx + rx * 1.04, hy + ry], fill=v.hair)
    f = min(max((math.cos(p[YAW]) + 0.5) / 0.8, 0.0), 1.0)
    if f > 0.05:
        fx, fy = hx + math.sin(p[YAW]) * rx * 0.3 * (2 - f), hy + 0.12 * ry
        frx, fry = rx * 0.96 * f, ry * 0.88
        dr.ellipse([fx - frx, fy - fry, fx + frx, fy + fry], fill=v.skin)


def render_label(p: np.ndarray, v: Video, height: int, width: int, skel=None) -> Image.Image:
    """OpenPose-style skeleton of the same pose on white: pastel limbs, small joint dots."""
    xy, dep = skel or skeleton(p, v, height, width)
    visible = np.ones(18, bool)
    visible[[0, 14, 15, 16, 17]] = dep[[0, 14, 15, 16, 17]] - dep[18] > -0.3 * HEAD_RX
    img = Image.new("RGB", (width, height), (255, 255, 255))
    dr = ImageDraw.Draw(img)
    sw, r = max(1.0, height / 170), max(1.0, height / 128)
    # every limb as a 20-gon ellipse around its bone, as cv2.ellipse2Poly does in OpenPose
    a, b = xy[LIMB_A], xy[LIMB_B]
    mid, half = (a + b) / 2, (b - a) / 2
    unit = half / np.maximum(np.hypot(half[:, :1], half[:, 1:]), 1e-9)
    ex = np.hypot(half[:, :1], half[:, 1:]) * _COS        # (17, 20) along the bone
    ey = sw * _SIN                                         # (1, 20) across it
    pts = np.stack([mid[:, :1] + ex * unit[:, :1] - ey * unit[:, 1:],
                    mid[:, 1:] + ex * unit[:, 1:] + ey * unit[:, :1]], 2)
    for i in np.flatnonzero(visible[LIMB_A] & visible[LIMB_B]):
        dr.polygon(list(map(tuple, pts[i].tolist())), fill=PASTEL[i])
    for j in np.flatnonzero(visible):
        x, y = xy[j]
        dr.ellipse([x - r, y - r, x + r, y + r], fill=OP_COLORS[j])
    return img


def render_video(n_frames: int, seed: int, height: int,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, labels), each uint8 (n, H, W, 3), of one synthetic video (handy in notebooks)."""
    v = make_video(n_frames, seed)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    labels = np.empty_like(frames)
    for i, p in enumerate(v.params):
        skel = skeleton(p, v, height, width)
        frames[i] = render_frame(p, v, height, width, skel)
        labels[i] = render_label(p, v, height, width, skel)
    return frames, labels


def to_model(img: Image.Image) -> np.ndarray:
    """Resize exactly as the model's loader does (lab4.data.resize_frame): (3, 32, 64) uint8."""
    return resize_frame(img, *MODEL_HW)


# ---------------------------------------------------------------- dataset writer
@dataclass(frozen=True)
class Task:
    """A run of consecutive frames of one video, rendered and saved by one worker."""
    video: Video            # params sliced to this run's frames
    height: int
    width: int
    img_dir: str | None     # where frames go (None: do not save frames)
    label_dir: str
    first_name: int         # file number of the run's first frame
    only_first_img: bool    # test: save the image of file number 0 only
    seq: int                # test sequence (-1: not a test run)
    start: int              # index of the first frame within its sequence


def _save(img: Image.Image, path: str) -> None:
    """Write a PNG atomically (lab4.files): no half-written file carries a final name."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=1)


def _work(t: Task):
    """Render and save one task's frames; return the test ground truth (32x64) if a test run."""
    small = []
    for i, p in enumerate(t.video.params):
        name = f"frame{t.first_name + i:06d}.png"
        skel = skeleton(p, t.video, t.height, t.width)
        save_img = t.img_dir is not None and (not t.only_first_img or t.first_name + i == 0)
        if save_img or t.seq >= 0:
            frame = render_frame(p, t.video, t.height, t.width, skel)
            if save_img:
                _save(frame, os.path.join(t.img_dir, name))
            if t.seq >= 0:   # test ground truth, as the model will see it
                small.append(to_model(frame))
        _save(render_label(p, t.video, t.height, t.width, skel), os.path.join(t.label_dir, name))
    return t.seq, t.start, (np.stack(small) if small else None), len(t.video.params)


def _prepare_out(out: pathlib.Path) -> None:
    """Refuse a foreign non-empty folder; clear the splits of a previous synth run."""
    if out.exists() and not out.is_dir():
        raise Lab4Error(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synth.json").is_file():
            raise Lab4Error(f"--out {out}: exists and is not empty (and holds no synth.json of a previous "
                            "run); choose a new or empty directory")
        for name in ("train", "val", "test"):
            shutil.rmtree(out / name, ignore_errors=True)
        for f in out.glob("*test_solution*"):
            f.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _tasks(cfg: SynthPreset, seed: int, H: int, W: int, out: pathlib.Path, style: str = "demo"):
    """Split every video into CHUNK-frame tasks; returns (tasks, train video lengths)."""
    rng = np.random.default_rng([seed, 0])
    lengths = []
    while sum(lengths) < cfg.n_train:
        lengths.append(min(int(rng.integers(400, 801)), cfg.n_train - sum(lengths)))
    runs = []   # (video, img_dir, label_dir, first_name, only_first_img, seq)
    first = 0
    for i, n in enumerate(lengths):
        runs.append((make_video(n, (seed, 1, i), style), "train/train_img", "train/train_label", first,
                     False, -1))
        first += n
    runs.append((make_video(cfg.n_val, (seed, 2, 0), style), "val/val_img", "val/val_label", 0, False, -1))
    for k in range(cfg.n_test):
        runs.append((make_video(cfg.test_len, (seed, 3, k), style), f"test/test_img/{k}",
                     f"test/test_label/{k}", 0, True, k))
    tasks = []
    for v, img_dir, label_dir, first, only_first, seq in runs:
        for d in (img_dir, label_dir):
            (out / d).mkdir(parents=True, exist_ok=True)
        for a in range(0, len(v.params), CHUNK):
            sub = replace(v, params=v.params[a:a + CHUNK])
            tasks.append(Task(sub, H, W, str(out / img_dir), str(out / label_dir), first + a,
                              only_first, seq, a))
    return tasks, lengths


def _write_json(out: pathlib.Path, info: dict) -> None:
    write_text_atomic(out / "synth.json", json.dumps(info, indent=2) + "\n")


def generate_dataset(out_dir, preset="mini", seed=0, height=None, width=None, workers=None,
                     progress=True, style: str = "demo") -> pathlib.Path:
    """Write the synthetic dataset under `out_dir` (layout in the module docstring); `style`: STYLES."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {sorted(STYLES)}")
    cfg = PRESETS[preset]
    H = cfg.height if height is None else int(height)
    W = cfg.width if width is None else int(width)
    for flag, val in (("--height", H), ("--width", W)):
        if val <= 0 or val % 2:
            raise ValueError(f"{flag} must be a positive multiple of 2, got {val}")
    workers = max(1, int(workers or os.cpu_count() or 1))
    out = pathlib.Path(out_dir)
    _prepare_out(out)
    tasks, lengths = _tasks(cfg, seed, H, W, out, style)
    info = {"generator": "lab4.synth", "preset": preset, "seed": seed, "style": style, "height": H, "width": W,
            **{k: v for k, v in asdict(cfg).items() if k not in ("height", "width")},
            "train_video_lengths": lengths, "model_hw": list(MODEL_HW), "complete": False}
    _write_json(out, info)
    solution = np.zeros((cfg.n_test, cfg.test_len, 3) + MODEL_HW, np.uint8)
    with progress_bar(total=sum(len(t.video.params) for t in tasks), unit="frame", show=progress,
                      desc=f"lab4-synth {preset}") as bar:
        pool = multiprocessing.Pool(workers) if workers > 1 else None
        try:   # each worker renders and saves its own frame ranges; results arrive in any order
            for seq, start, small, n in (pool.imap_unordered(_work, tasks) if pool
                                         else map(_work, tasks)):
                if seq >= 0:
                    solution[seq, start:start + n] = small
                bar.update(n)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    with atomic_path(out / "test_solution.npy") as tmp:
        np.save(tmp, solution)
    _write_json(out, {**info, "complete": True})
    return out
