"""Configuration: one dataclass whose field names are the template's command-line flags, plus
our additions, and named presets.

Defaults of the template's flags are the template's (Trainer.py), so an old command means the
same thing here. Presets are starting points that a command line overrides flag by flag.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

CHECKPOINT_VERSION = 6          # 2: + train_state_dict, ema_n when --ema averages the weights;
                                # 3: + config.prior, z; learned_prior.* weights with --prior learned;
                                # 4: + config.precision (resolved), deterministic; grad_scaler with fp16;
                                #    rng.cuda: the RNG of the device in use only;
                                # 5: + config.colour_anchor, on by default (a config without it: off)
                                # 6: + config.appearance_memory (appearance_memory.* weights when on),
                                #    feedback_noise, detach_feedback (a config without them: off);
                                #    long_clip, long_clip_epochs (0: off), memory_follows_pose, memory_body_code
                                #    (off), memory_gap (0) added since, with defaults
SMOKE_ENV = "LAB4_SMOKE"  # the one test-mode switch: LAB4_SMOKE=1 selects the `smoke` preset

# ---- the Kaggle protocol (LAB4_SPEC.md section 4): defined here once, imported everywhere ----
SEQ_LEN = 630             # frames of the val video and of each test sequence (frame 0 is given)
LAST_SCORED = 600         # Kaggle scores frames 1..LAST_SCORED of each sequence
N_TEST_SEQUENCES = 5      # test sequences in submission.csv (5 x 630 = 3,150 rows)
N_PUBLIC = 3              # sequences 0..2 make the public score, 3..4 the private one
EARLY_FRAMES = (1, 150)   # the rollout's first quarter of the scored frames ...
LATE_FRAMES = (LAST_SCORED - 149, LAST_SCORED)   # ... and its last (451..600): "drift" = early - late

# ---- the allowed values of each choice flag: the command line, validation and the modules read these ----
CHOICES: dict[str, tuple[str, ...]] = {
    "optim": ("Adam", "AdamW"),
    "kl_anneal_type": ("Cyclical", "Monotonic", "None"),
    "lr_scheduler": ("multistep", "cosine", "constant"),
    "kl_reduction": ("sum", "mean"),
    "tf_coin": ("batch", "epoch"),
    "init_output": ("data", "default"),
    "init_posterior": ("prior", "default"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "prior": ("fixed", "learned"),     # N(0, I) as the template; p(z_t | x_{t-1}, p_t) as SVG-LP
    "z": ("sample", "mean"),           # how a rollout takes z from the prior
}


def refuse_unknown_choice(name: str, value) -> None:
    """A value of a choice flag outside CHOICES[name] is one line naming the flag and the choices."""
    if value not in CHOICES[name]:
        raise ValueError(f"--{name} {value!r}: expected one of {', '.join(CHOICES[name])}")


@dataclass
class TrainConfig:
    # ---- the template's flags (Trainer.py / Tester.py), same names and defaults ----
    batch_size: int = 2             # sequences per optimisation step
    lr: float = 0.001               # initial learning rate
    device: str = "auto"            # template: "cuda"; "auto" = CUDA when present, else CPU
    optim: str = "Adam"             # Adam or AdamW
    gpu: int = 1                    # accepted for compatibility; one device is used
    test: bool = False              # evaluate --ckpt_path on the val video instead of training
    store_visualization: bool = False  # write the val GIF and PSNR plot after each validation
    DR: str = ""                    # dataset root (Kaggle layout)
    save_root: str = ""             # where checkpoints, metrics and figures go
    num_workers: int = 4            # processes used to decode PNGs into the cache
    num_epoch: int = 70             # epochs to train
    per_save: int = 3               # write epoch=<N>.ckpt every this many epochs
    partial: float = 1.0            # fraction of the training frames used
    train_vi_len: int = 16          # frames per training sequence
    val_vi_len: int = SEQ_LEN       # frames of the validation rollout
    frame_H: int = 32               # model input height
    frame_W: int = 64               # model input width
    F_dim: int = 128                # frame feature channels
    L_dim: int = 32                 # pose feature channels
    N_dim: int = 12                 # latent channels
    D_out_dim: int = 192            # decoder feature channels
    tfr: float = 1.0                # initial teacher-forcing ratio
    tfr_sde: int = 10               # epoch from which tfr decays
    tfr_d_step: float = 0.1         # tfr decrease per epoch
    ckpt_path: str | None = None    # checkpoint to resume (train) or evaluate (test)
    fast_train: bool = False        # first fast_train_epoch epochs on fast_partial of the data
    fast_partial: float = 0.4       # data fraction during fast training
    fast_train_epoch: int = 5       # epochs of fast training
    kl_anneal_type: str = "Cyclical"  # Cyclical, Monotonic or None
    kl_anneal_cycle: int = 10       # cycles over num_epoch (Cyclical)
    kl_anneal_ratio: float = 1.0    # fraction of each cycle spent rising
    # ---- ours ----
    preset: str = "default"         # the preset these values started from (recorded only)
    seed: int = 1                   # seeds data order, teacher-forcing coins, noise, init
    sigmoid_output: bool = True     # bound the generator output to [0, 1] (template: unbounded)
    colour_anchor: bool = True      # add the sequence's first-frame mean colour to the output (logit for the
                                    # sigmoid head): the studio colour carried from frame 0 by construction
                                    # (RESULTS 6i: quick +4.0 -> +7.9 dB over copy-first); template: off
    init_output: str = "data"       # data: the Generator starts at the train frames' mean colour;
                                    # default: PyTorch's init (template)
    init_posterior: str = "prior"   # prior: q(z|x,p) starts at N(0, I), KL ~0 at step 1;
                                    # default: PyTorch's init (template: KL ~10^3 at step 1)
    lr_scheduler: str = "multistep"  # multistep (template: x0.1 at epochs 2 and 5), cosine, constant
    lr_milestones: tuple = (2, 5)   # multistep milestones (template's)
    min_lr: float = 0.0             # cosine floor
    weight_decay: float = 0.0       # AdamW/Adam weight decay
    grad_clip: float = 1.0          # gradient-norm clip (template: 1.0)
    kl_reduction: str = "sum"       # sum: template (sum over latents / batch); mean: per element
    kl_reach_stop: bool = True      # ramp ends exactly at beta=1 (Fu et al.'s code stops one step short)
    kl_beta_min: float = 0.0        # floor under beta (0 keeps Fu et al.'s beta=0 cycle starts)
    tf_coin: str = "batch"          # teacher-forcing coin per batch, or per epoch (the template's)
    channels_last: bool = True     # NHWC activations (faster convolutions on CPU and GPU; same maths)
    time_chunk: int = -1            # time steps per batched call in training; -1: 8 on CPU, all on CUDA
    precision: str = "auto"         # training: auto = bf16 autocast on CUDA compute capability >= 8.0, fp16
                                    # autocast + GradScaler on 7.x, fp32 below and on the CPU (bf16 there
                                    # with cpu_amp); or fp32, bf16, fp16. config.json records the choice
    compile: bool = False           # torch.compile the training forward and the rollout step (CUDA graphs on
                                    # a GPU): off, compiling costs minutes on a CPU (RESULTS.md)
                                    # says it wins (CPU: minutes of compiling; GPU: not measured)
    deterministic: bool = False     # CUDA: cuDNN deterministic algorithms, no benchmark (exact resume)
    amp: bool = True                # with precision auto: mixed precision on CUDA (False: fp32)
    cpu_amp: bool = False           # bfloat16 autocast on CPU, training and rollouts: ~1.9x on CPUs with
                                    # AVX512-BF16/AMX, changes the numerics (opt-in; benchmarks/RESULTS.md)
    val_every: int = 1              # validate every this many epochs (and always at the end)
    steps_per_epoch: int = 0        # cap on optimisation steps per epoch; 0 = the whole epoch
    cache_dir: str | None = None    # decoded-frame cache; default <DR>/.lab4_cache or ~/.cache/lab4
    tensorboard: bool = False       # also write TensorBoard events to <save_root>/tensorboard
    ema: float = 0.98               # decay of the weights' moving average that validation, checkpoints'
                                    # state_dict and lab4-test use (0: off, the raw weights)
    prior: str = "fixed"            # fixed: z ~ N(0, I) (template); learned: p(z_t | x_{t-1}, p_t), SVG-LP
    z: str = "sample"               # rollouts (validation, lab4-test): sample z from the prior, or its mean
    appearance_memory: bool = False  # the decoder sees frame 0's features beside the previous frame's at every
                                    # step (a 1x1 conv over both, started as "previous only"; SVG's content skip)
    memory_follows_pose: bool = False  # with appearance_memory: frame 0's features shifted as the body moved
                                    # (its pose image's centre, frame 0 -> now), so they lie where the body is
    memory_body_code: bool = False  # with appearance_memory: frame 0's features averaged over its body (its
                                    # pose image), painted where each step's pose image shows the body
    memory_lr_scale: float = 1.0    # with appearance_memory: its weights learn at this multiple of --lr
    memory_gap: int = 0             # with appearance_memory, training only: the memory (and its pose) comes from
                                    # 0..memory_gap frames before the clip's first frame (uniform per clip), as at
                                    # test time frame 0 lies up to 600 frames back; 0: the clip's first frame
    feedback_noise: float = 0.0     # training without teacher forcing: std of noise on the fed-back frame
    detach_feedback: bool = False   # training without teacher forcing: no gradient through the fed-back frame
    long_clip: int = 0              # 0: off; else the last long_clip_epochs epochs train on clips of this many
                                    # frames, the batch cut to keep the frames per step (batch x train_vi_len)
    long_clip_epochs: int = 1       # how many final epochs train on long clips (with long_clip)
    world_size: int = 1             # recorded, not a flag: the processes the run trained with (torchrun)

    def model_dims(self) -> dict:
        return dict(F_dim=self.F_dim, L_dim=self.L_dim, N_dim=self.N_dim, D_out_dim=self.D_out_dim)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d.setdefault("colour_anchor", False)       # saved before the anchor existed (version <= 4): trained without
        if "lr_milestones" in d:
            d["lr_milestones"] = tuple(d["lr_milestones"])
        return cls(**d)


def _cpu_bf16_is_fast() -> bool:
    """Whether this CPU has oneDNN's bfloat16 kernels (AVX512 or AMX): there bf16 autocast runs the
    convolutions ~2x faster than fp32 (benchmarks/RESULTS.md); elsewhere it is emulated, slower."""
    try:
        import torch
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


# the memory's options as they are without it (`make_config` with appearance_memory=False drops a preset's)
MEMORY_OFF = dict(appearance_memory=False, memory_follows_pose=False, memory_body_code=False, memory_lr_scale=1.0,
                  memory_gap=0)

# quick's appearance memory where it trains in bf16 (`--appearance_memory`, RESULTS 6o-6r), following the
# pose and taken in training from up to 300 frames before the clip (--memory_follows_pose --memory_gap 300):
# the drift fell from 2.2 to ~0.2 dB over 5 held-out runs, the mean PSNR about the same (RESULTS 6z/6za)
QUICK_MEMORY = dict(MEMORY_OFF, appearance_memory=True, memory_follows_pose=True, memory_gap=300)

# quick's steps where it trains in bf16: 3 x 93 on clips of 12 frames take the time of 3 x 70 on 16
# (9.6-10.9 min on a 2-core AMD EPYC) and gained +0.88 dB mean over 6 held-out runs (RESULTS 6w-6y)
QUICK_BF16_STEPS = dict(steps_per_epoch=93, train_vi_len=12)

# Presets: overrides of the defaults above. The command line overrides a preset.
PRESETS: dict[str, dict] = {
    # The template exactly: unbounded output, MultiStepLR([2, 5]), Fu et al.'s schedule as coded.
    "template": dict(sigmoid_output=False, colour_anchor=False, kl_reach_stop=False, tf_coin="epoch", init_output="default",
                     init_posterior="default", ema=0.0, precision="fp32"),
    # What the best student reports converged on, for a GPU and the real data.
    "best": dict(optim="AdamW", lr=3e-4, weight_decay=1e-2, lr_scheduler="cosine", min_lr=1e-6,
                 num_epoch=400, tfr=0.0, kl_anneal_type="Monotonic", kl_anneal_ratio=0.25,
                 batch_size=8, per_save=20, val_every=5),
    # The first real result on a CPU: full model dims, the recipe with the most quality per wall-clock
    # minute we measured (benchmarks/bench_quality.py, RESULTS.md section 6): batch 2, Adam 1e-3 with a
    # cosine decay to 1e-4, beta fixed at 1 on the template's summed KL, no teacher forcing (early
    # teacher forcing was worse for the prior-z rollout: 23.5 dB at step 130 against 28.2 at step 92),
    # the weights' moving average (ema, a default) and one validation. Where the CPU runs bfloat16
    # natively (AVX512-BF16/AMX), bf16 autocast doubles the steps per minute, and the decoder also sees
    # frame 0's features (QUICK_MEMORY above; +1.24 dB mean over 8 held-out runs at 3 x 70 steps on
    # 16-frame clips, RESULTS 6o-6r; moved with the body and trained from up to 300 frames back since
    # 6z/6za); the same ~10 minutes then give 3 x 93 steps on 12-frame clips
    # (QUICK_BF16_STEPS: more, shorter steps, RESULTS 6w-6y). Elsewhere 3 x 35 fp32 steps on 16-frame
    # clips in about the same time, without the memory: at 105 fp32 steps it lost 0.21 / 0.47 dB (6l).
    "quick": dict(batch_size=2, optim="Adam", lr=1e-3, lr_scheduler="cosine", min_lr=1e-4, num_epoch=3,
                  tfr=0.0, kl_anneal_type="None", per_save=3, val_every=3,
                  **(dict(cpu_amp=True, **QUICK_BF16_STEPS, **QUICK_MEMORY) if _cpu_bf16_is_fast()
                     else dict(steps_per_epoch=35))),
    # A CPU-sized configuration for `make demo`: small dims, short epochs, no teacher forcing,
    # the template's KL scale with beta fixed at 1 (z stays close to the prior that inference
    # samples from); measured: ~28 dB val PSNR after 120 steps on the demo synthetic data.
    # NCHW: with so few channels, channels_last was slower here.
    "demo": dict(F_dim=32, L_dim=16, N_dim=4, D_out_dim=48, batch_size=4, optim="AdamW", lr=2e-3,
                 lr_scheduler="cosine", min_lr=1e-4, num_epoch=6, steps_per_epoch=25, tfr=0.0,
                 kl_anneal_type="None", per_save=3, val_every=3, channels_last=False),
    # Tests and notebooks under LAB4_SMOKE=1: tiny dims, a handful of steps, short rollouts.
    "smoke": dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24, batch_size=2, num_epoch=3, channels_last=False,
                  steps_per_epoch=4, train_vi_len=8, val_vi_len=40, per_save=1, val_every=1, num_workers=1,
                  lr_scheduler="constant"),
}


def make_config(preset: str = "default", **overrides) -> TrainConfig:
    """A config from a named preset, then keyword overrides (unknown names are an error)."""
    if preset != "default" and preset not in PRESETS:
        raise ValueError(f"--preset {preset!r}: expected one of default, {', '.join(PRESETS)}")
    values = dict(PRESETS.get(preset, {}))
    if overrides.get("appearance_memory") is False:      # the memory off: the preset's options of it go too
        values.update({k: v for k, v in MEMORY_OFF.items() if k in values})
    values.update(overrides)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    return TrainConfig(preset=preset, **values)


def smoke_mode() -> bool:
    """True when the LAB4_SMOKE environment variable asks for the smoke preset."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() not in ("", "0", "false", "no")


# ---- validation: bad values refused up front, one line each, before anything is written ----
POSITIVE_INTS = ("batch_size", "num_epoch", "per_save", "train_vi_len", "val_vi_len", "val_every")
FRACTIONS = ("partial", "fast_partial")
MODULE_DIVISORS = (("F_dim", 8), ("D_out_dim", 8), ("L_dim", 4), ("N_dim", 4))   # the blocks divide by these


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad values up front as one Lab4Error line naming the flag and what was expected."""
    from .errors import Lab4Error
    from .schedules import kl_beta_schedule
    try:
        for name in CHOICES:
            refuse_unknown_choice(name, getattr(cfg, name))
        kl_beta_schedule(cfg)
        for name in POSITIVE_INTS:
            _expect(getattr(cfg, name) >= 1, name, cfg, "a positive integer")
        for name in FRACTIONS:
            _expect(0 < getattr(cfg, name) <= 1, name, cfg, "a fraction in (0, 1]")
        for name in ("train_vi_len", "val_vi_len"):
            _expect(getattr(cfg, name) >= 2, name, cfg, "at least 2 frames")
        for name in ("lr", "grad_clip"):
            _expect(getattr(cfg, name) > 0, name, cfg, "a positive number")
        _expect(0 <= cfg.ema < 1, "ema", cfg, "a decay in [0, 1) (0: no weight averaging)")
        _expect(0 <= cfg.tfr <= 1, "tfr", cfg, "a ratio in [0, 1]")
        _expect(cfg.tfr_d_step >= 0, "tfr_d_step", cfg, "a decrease >= 0 per epoch")
        _expect(cfg.feedback_noise >= 0, "feedback_noise", cfg, "a standard deviation >= 0")
        _expect(cfg.long_clip == 0 or cfg.long_clip > cfg.train_vi_len, "long_clip", cfg,
                f"0 (off) or more frames than --train_vi_len {cfg.train_vi_len}")
        _expect(cfg.long_clip_epochs >= 1, "long_clip_epochs", cfg, "a positive number of final epochs")
        _expect(cfg.appearance_memory or not cfg.memory_follows_pose, "memory_follows_pose", cfg,
                "--appearance_memory too (it moves the memory's features)")
        _expect(cfg.appearance_memory or not cfg.memory_body_code, "memory_body_code", cfg,
                "--appearance_memory too (it adds to the memory's features)")
        _expect(cfg.memory_lr_scale > 0, "memory_lr_scale", cfg, "a positive multiple of --lr")
        _expect(cfg.memory_gap >= 0, "memory_gap", cfg, "a number of frames >= 0")
        _expect(cfg.appearance_memory or cfg.memory_gap == 0, "memory_gap", cfg,
                "--appearance_memory too (it moves where the memory's frame is taken)")
        for name, divisor in MODULE_DIVISORS:
            value = getattr(cfg, name)
            _expect(value >= divisor and value % divisor == 0, name, cfg,
                    f"a positive multiple of {divisor} (the modules' blocks divide it)")
    except ValueError as e:
        raise Lab4Error(str(e)) from None
    if not cfg.save_root:
        raise Lab4Error("--save_root: required (the output folder)")


def clip_of_epoch(cfg: TrainConfig, epoch: int) -> tuple[int, int]:
    """(frames per training clip, clips per batch) in 0-based `epoch`: train_vi_len and batch_size,
    or with --long_clip in the last long_clip_epochs epochs, long_clip frames and the batch cut so
    that a step sees about as many frames (batch_size x train_vi_len // long_clip, at least 1)."""
    if cfg.long_clip and epoch >= cfg.num_epoch - cfg.long_clip_epochs:
        return cfg.long_clip, max(1, cfg.batch_size * cfg.train_vi_len // cfg.long_clip)
    return cfg.train_vi_len, cfg.batch_size


def _expect(ok: bool, name: str, cfg: TrainConfig, expected: str) -> None:
    if not ok:
        raise ValueError(f"--{name} {getattr(cfg, name)}: expected {expected}")


def resolve_resume_config(cfg: TrainConfig, explicit: dict, ckpt: dict) -> TrainConfig:
    """Resuming one of our checkpoints (`ckpt`, the file at cfg.ckpt_path as read_checkpoint read it)
    continues its config; flags given now (`explicit`) override it, and model-size flags that differ
    from the checkpoint are refused. A template checkpoint has no config: `cfg` stands."""
    from .checkpoint import config_of, is_template_checkpoint, refuse_other_size
    if is_template_checkpoint(ckpt):
        return cfg
    base = config_of(ckpt)
    refuse_other_size(base, explicit, cfg.ckpt_path)
    base.precision = "auto"                          # chosen again for the device it resumes on (or --precision)
    for k, v in explicit.items():
        setattr(base, k, v)
    base.ckpt_path = cfg.ckpt_path
    return base
