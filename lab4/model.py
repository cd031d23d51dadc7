"""The conditional VAE for video prediction: the training step and the autoregressive rollout.

Shapes: B batch, T time, S sequences in a rollout, C/F/L/N/D channels, H x W = 32 x 64.
The five modules keep the template's attribute names, so `state_dict()` keys are the template's.

Speed without changing the maths (each path is proven equal to the step-by-step template path in
tests/test_model.py):
- every ground-truth frame of a sequence is encoded once (the template encodes each frame
  twice: as the posterior's input and as the next step's previous frame);
- frames, poses and posteriors of 8 time steps go through one batched call (a CPU's caches
  favour 8 over 15); the Label_Encoder's BatchNorm still normalises each time step with that
  step's own batch statistics, as the step-by-step loop does; under teacher forcing the decoder
  is batched the same way;
- a rollout moves S independent sequences together, each with its own noise generator.

The prior over z (`prior`): "fixed" is the template's N(0, I); "learned" adds the prior network of
Denton & Fergus's SVG-LP (2018), p(z_t | x_{t-1}, p_t): the posterior's architecture (a second
Gaussian_Predictor, under its own key prefix `learned_prior.`) given the previous frame's feature,
the one the decoder is given (ground truth under teacher forcing, else the model's own prediction),
and the current pose's. Training then minimises KL(q(z_t | x_t, p_t) || p(z_t | x_{t-1}, p_t)) and
the rollout draws z from it; the five modules and their keys stay as they are.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import refuse_unknown_choice
from .modules import AppearanceMemory, Decoder_Fusion, Gaussian_Predictor, Generator, Label_Encoder, RGB_Encoder


class VideoCVAE(nn.Module):
    def __init__(self, F_dim: int = 128, L_dim: int = 32, N_dim: int = 12, D_out_dim: int = 192,
                 sigmoid_output: bool = True, prior: str = "fixed", colour_anchor: bool = False,
                 time_chunk: int = 8, compile_rollout: bool = False, world=None, appearance_memory: bool = False,
                 feedback_noise: float = 0.0, detach_feedback: bool = False, memory_follows_pose: bool = False,
                 memory_body_code: bool = False):
        super().__init__()
        refuse_unknown_choice("prior", prior)
        self.frame_transformation = RGB_Encoder(3, F_dim)
        self.label_transformation = Label_Encoder(3, L_dim)
        self.Gaussian_Predictor = Gaussian_Predictor(F_dim + L_dim, N_dim)
        self.Decoder_Fusion = Decoder_Fusion(F_dim + L_dim + N_dim, D_out_dim)
        self.Generator = Generator(D_out_dim, 3)
        # p(z_t | x_{t-1}, p_t) with --prior learned; None: the fixed N(0, I)
        self.learned_prior = Gaussian_Predictor(F_dim + L_dim, N_dim) if prior == "learned" else None
        # frame 0's features beside the previous frame's at every step (--appearance_memory); None: off
        self.appearance_memory = (AppearanceMemory(F_dim, 1 + memory_follows_pose + memory_body_code)
                                  if appearance_memory else None)
        self.memory_follows_pose = memory_follows_pose   # frame 0's features moved to where the body is now
        self.memory_body_code = memory_body_code         # frame 0's body, pooled, painted on the pose now
        self.N_dim = N_dim
        self.sigmoid_output = sigmoid_output  # a flag, not a weight: template checkpoints still load
        self.colour_anchor = colour_anchor    # the output adds the first frame's mean colour (`anchor_of`)
        self.time_chunk = time_chunk          # time steps per batched call in `forward` (0: all)
        self.compile_rollout = compile_rollout  # rollouts run `rollout_step` under torch.compile (--compile)
        self.world = world                    # data-parallel training (lab4.distributed.World): this rank's
                                              # rows of the global batch's noise and BatchNorm statistics
        self.feedback_noise = feedback_noise  # training without teacher forcing: std of the noise added to
        self.detach_feedback = detach_feedback  # the fed-back frame; stop its gradient (`feed_back`)

    @classmethod
    def from_config(cls, cfg, device: torch.device | None = None, world=None) -> "VideoCVAE":
        """The model a config describes, complete: --time_chunk -1 means 8 on the CPU and all of a
        sequence on CUDA; `world` (lab4.distributed.World) only for data-parallel training."""
        on_cuda = device is not None and torch.device(device).type == "cuda"
        time_chunk = cfg.time_chunk if cfg.time_chunk >= 0 else (0 if on_cuda else 8)
        return cls(cfg.F_dim, cfg.L_dim, cfg.N_dim, cfg.D_out_dim, sigmoid_output=cfg.sigmoid_output,
                   prior=cfg.prior, colour_anchor=cfg.colour_anchor, time_chunk=time_chunk,
                   compile_rollout=cfg.compile, world=world, appearance_memory=cfg.appearance_memory,
                   feedback_noise=cfg.feedback_noise, detach_feedback=cfg.detach_feedback,
                   memory_follows_pose=cfg.memory_follows_pose, memory_body_code=cfg.memory_body_code)

    @property
    def prior(self) -> str:
        return "fixed" if self.learned_prior is None else "learned"

    # ---- building blocks -------------------------------------------------------------------
    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) -> (..., F, H, W), all leading dims in one batched call."""
        out = self.frame_transformation(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*x.shape[:-3], *out.shape[1:])

    def encode_labels(self, p: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, L, H, W) in one call. In training mode the BatchNorm uses
        per-time-step statistics (over B, H, W) and updates its running averages once per step
        in time order, exactly as T separate calls on (B, 3, H, W) would."""
        B, T = p.shape[:2]
        flat = p.reshape(B * T, *p.shape[2:])
        pad, conv, bn, act, res = self.label_transformation
        if not (self.training and isinstance(bn, nn.BatchNorm2d)) or (T == 1 and self.world is None):
            out = self.label_transformation(flat)
            return out.reshape(B, T, *out.shape[1:])
        h = conv(pad(flat)).contiguous()                                   # (B*T, C, H, W)
        C, H, W = h.shape[1:]
        grouped = h.view(B, T * C, H, W)                      # channel t*C + c: one BN group per step
        if self.world is None:
            normed = F.batch_norm(grouped, None, None, bn.weight.repeat(T), bn.bias.repeat(T),
                                  training=True, momentum=0.0, eps=bn.eps)
            stats = None
        else:                                                 # statistics over every rank's sequences
            from .distributed import batch_norm_over_ranks
            normed, stats = batch_norm_over_ranks(grouped, bn.weight.repeat(T), bn.bias.repeat(T), bn.eps)
        if bn.track_running_stats:
            _update_running_stats(bn, h.detach().view(B, T, C, H, W), stats)
        out = res(act(normed.view(B * T, C, H, W)))
        return out.reshape(B, T, *out.shape[1:])

    def anchor_of(self, first_frame: torch.Tensor) -> torch.Tensor | None:
        """With colour_anchor: the sequence's first frame's mean colour, (B, 3, H, W) -> (B, 3, 1, 1),
        through the output bound's inverse (logit for the sigmoid head). `generate` adds it to the
        Generator's output, so the studio's colour is carried from frame 0 by construction and the
        network learns only the departure from it (RESULTS 6g). None without colour_anchor."""
        if not self.colour_anchor:
            return None
        mean = first_frame.float().mean(dim=(2, 3), keepdim=True)          # (B, 3, 1, 1)
        return torch.logit(mean.clamp(0.02, 0.98)) if self.sigmoid_output else mean

    def context_of(self, first_frame: torch.Tensor, first_feat: torch.Tensor | None = None,
                   first_label: torch.Tensor | None = None, memory_from: tuple | None = None) -> tuple:
        """What every step of a sequence carries from frame 0 (B, 3, H, W): (the colour anchor (B, 3, 1, 1),
        the appearance memory: frame 0's features (B, F, H, W), `first_feat` when the caller has them,
        where frame 0's body is (B, 2): the centre of its pose image `first_label`, with
        memory_follows_pose, frame 0's body code (B, F, 1, 1): its features averaged over where
        `first_label` shows the body, with memory_body_code), each None when off (then frame 0 is not
        encoded here). `at_pose` turns it into one step's context. memory_from: another (frame, pose)
        (B, 3, H, W) each that the memory is taken from (training with --memory_gap); the colour anchor
        stays `first_frame`'s."""
        anchor, memory, origin, code = self.anchor_of(first_frame), None, None, None
        if memory_from is not None:
            first_frame, first_feat, first_label = memory_from[0], None, memory_from[1]
        if self.appearance_memory is not None:
            memory = self.frame_transformation(first_frame) if first_feat is None else first_feat
            if self.memory_follows_pose:
                origin = body_centre(first_label)
            if self.memory_body_code:
                code = body_code(memory, first_label)
        return anchor, memory, origin, code

    @property
    def memory_needs_pose(self) -> bool:
        """Whether a step's memory depends on its pose image (`at_pose` changes the context)."""
        return self.memory_follows_pose or self.memory_body_code

    def at_pose(self, context: tuple, label: torch.Tensor) -> tuple:
        """The context of the step whose pose image is `label` (B, 3, H, W): frame 0's features, then with
        memory_follows_pose a copy shifted by how far the body's centre moved since frame 0 (frame 0's
        shirt where the body is now), with memory_body_code frame 0's body code painted where this pose
        image shows the body, all stacked on the channels; the context unchanged when neither is on."""
        anchor, memory, origin, code = context
        if origin is None and code is None:
            return context
        parts = [memory]                                                     # (B, F, H, W) each
        if origin is not None:
            parts.append(shift_features(memory, body_centre(label) - origin))
        if code is not None:
            parts.append(code * body_mask(label).to(code.dtype))
        return anchor, torch.cat(parts, 1), origin, code                      # (B, (1 + m) F, H, W)

    def generate(self, prev_feat: torch.Tensor, label_feat: torch.Tensor, z: torch.Tensor,
                 context: tuple = (None, None, None, None)) -> torch.Tensor:
        """(B, F, H, W), (B, L, H, W), (B, N, H, W), context (`context_of`) -> frame (B, 3, H, W)."""
        anchor, memory = context[:2]
        if memory is not None:                                      # frame 0's appearance beside the last frame's
            prev_feat = self.appearance_memory(prev_feat, memory)
        frame = self.Generator(self.Decoder_Fusion(prev_feat, label_feat, z))
        if anchor is not None:
            frame = frame + anchor
        return torch.sigmoid(frame) if self.sigmoid_output else frame

    def posterior(self, cur_feat: torch.Tensor, label_feat: torch.Tensor, eps: torch.Tensor | None = None):
        """z ~ q(z | x_t, p_t) by the reparameterisation, and its mu, logvar: (B*n, N, H, W) each. In
        data-parallel training the noise is this rank's rows of the whole batch's (lab4.distributed)."""
        if self.world is None or eps is not None:
            return self.Gaussian_Predictor(cur_feat, label_feat, eps)
        from .distributed import global_noise
        mu, logvar = self.Gaussian_Predictor.distribution(cur_feat, label_feat)
        return self.Gaussian_Predictor.reparameterize(mu, logvar, global_noise(mu, self.world)), mu, logvar

    def prior_z(self, prev_feat: torch.Tensor, label_feat: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        """z for one rollout step, (S, N, H, W): from N(0, I) or, with the learned prior, from
        p(z | x_{t-1}, p_t) given the previous frame's and the pose's features (S, F/L, H, W);
        eps (S, N, H, W) is the step's standard-normal noise, None to take the prior's mean."""
        if self.learned_prior is None:
            return eps if eps is not None else \
                torch.zeros(prev_feat.shape[0], self.N_dim, *prev_feat.shape[2:], device=prev_feat.device)
        mu, logvar = self.learned_prior.distribution(prev_feat, label_feat)   # (S, N, H, W) each
        return mu if eps is None else mu + torch.exp(0.5 * logvar) * eps

    def rollout_step(self, prev: torch.Tensor, label_feat: torch.Tensor, eps: torch.Tensor | None,
                     context: tuple) -> torch.Tensor:
        """One frame of the rollout: the previous frame (S, 3, H, W), the pose's features (S, L, H, W),
        the noise eps (S, N, H, W) or None (z = the prior's mean), the sequence's `context_of` -> the
        next frame (S, 3, H, W).
        Tensors in, a tensor out: the part `--compile` hands to torch.compile (`compiled_rollout_step`)."""
        prev_feat = self.frame_transformation(prev)                  # (S, F, H, W)
        z = self.prior_z(prev_feat, label_feat, eps)                 # (S, N, H, W)
        return self.generate(prev_feat, label_feat, z, context)

    def feed_back(self, frame: torch.Tensor) -> torch.Tensor:
        """Training without teacher forcing: the features (B, F, H, W) of the generated frame (B, 3, H, W)
        the next step is given; with detach_feedback its gradient stops there, with feedback_noise it
        is perturbed first (N(0, std^2) per pixel), as the rollout's own errors will perturb it."""
        if self.detach_feedback:
            frame = frame.detach()
        if self.feedback_noise > 0:
            frame = frame + self.feedback_noise * torch.randn_like(frame)
        return self.frame_transformation(frame)

    # ---- training --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, p: torch.Tensor, teacher_forcing: bool, eps: torch.Tensor | None = None,
                memory: tuple | None = None):
        """One training sequence batch. x, p: (B, T, 3, H, W) in [0, 1]; eps: optional
        (B, T-1, N, H, W) noise; memory: optional (frame, pose) (B, 3, H, W) each that the appearance
        memory is taken from (--memory_gap: a frame before the clip), else the clip's first.
        Returns x_hat (B, T-1, 3, H, W) predicting x[:, 1:], and mu, logvar (B*(T-1), N, H, W) of
        the posterior q(z | x_t, p_t); with the learned prior also prior_mu, prior_logvar
        (B*(T-1), N, H, W) of p(z_t | x_{t-1}, p_t), x_{t-1} being the previous frame the decoder is given.

        Time is processed in chunks of `self.time_chunk` steps (0: all at once): each chunk's
        frames, poses and posteriors are one batched call each. On a CPU, 8-step chunks keep the
        activations in cache and beat both one call for everything and one call per step."""
        B, T = x.shape[:2]
        chunk = self.time_chunk if self.time_chunk > 0 else T - 1
        flat = lambda t: t.reshape(-1, *t.shape[2:])                # (B, n, ...) -> (B*n, ...)
        unflat = lambda t, n: t.reshape(B, n, *t.shape[1:])         # (B*n, ...) -> (B, n, ...)
        prev_feat = self.frame_transformation(x[:, 0])              # (B, F, H, W)
        context = self.context_of(x[:, 0], prev_feat, p[:, 0], memory)   # anchor (B, 3, 1, 1), memory
                                                                    # (B, F, H, W), origin, code
        outs, mus, logvars, label_feats, zs, priors = [], [], [], [], [], []
        for s in range(1, T, chunk):
            e, n = min(s + chunk, T), min(chunk, T - s)
            cur = self.encode_frames(x[:, s:e])                     # (B, n, F, H, W): each frame once
            lab = self.encode_labels(p[:, s:e])                     # (B, n, L, H, W)
            z, mu, logvar = self.posterior(flat(cur), flat(lab), None if eps is None else flat(eps[:, s - 1:e - 1]))
            mus.append(unflat(mu, n)), logvars.append(unflat(logvar, n))
            if teacher_forcing:                                     # previous frame = ground truth: batched
                prev = torch.cat([prev_feat.unsqueeze(1), cur[:, :-1]], 1)   # (B, n, F, H, W)
                step_context = tuple(None if c is None else c.repeat_interleave(n, 0) for c in context)   # B*n rows
                step_context = self.at_pose(step_context, flat(p[:, s:e]))
                outs.append(unflat(self.generate(flat(prev), flat(lab), z, step_context), n))
                if self.learned_prior is not None:
                    priors.append([unflat(a, n) for a in self.learned_prior.distribution(flat(prev), flat(lab))])
                prev_feat = cur[:, -1]
            else:
                label_feats.append(lab), zs.append(unflat(z, n))
        if not teacher_forcing:                                     # previous frame = own prediction
            lab, z = torch.cat(label_feats, 1), torch.cat(zs, 1)
            for t in range(T - 1):
                if self.learned_prior is not None:
                    priors.append([a.unsqueeze(1) for a in self.learned_prior.distribution(prev_feat, lab[:, t])])
                frame = self.generate(prev_feat, lab[:, t], z[:, t], self.at_pose(context, p[:, t + 1]))   # (B, 3, H, W)
                outs.append(frame.unsqueeze(1))
                if t < T - 2:
                    prev_feat = self.feed_back(frame)
        posterior = torch.cat(mus, 1).flatten(0, 1), torch.cat(logvars, 1).flatten(0, 1)
        if self.learned_prior is None:
            return torch.cat(outs, 1), *posterior
        prior = (torch.cat([m for m, _ in priors], 1).flatten(0, 1), torch.cat([v for _, v in priors], 1).flatten(0, 1))
        return torch.cat(outs, 1), *posterior, *prior

    # ---- inference -------------------------------------------------------------------------
    @torch.inference_mode()
    def rollout(self, first_frame: torch.Tensor, labels: torch.Tensor, seeds: list[int] | None = None,
                label_chunk: int = 16, progress=None, z_mode: str = "sample") -> torch.Tensor:
        """Autoregressive prediction, z drawn from the prior (`prior_z`: N(0, I), or the learned
        prior given the previous generated frame and the pose; z_mode "mean": the prior's mean).

        first_frame (S, 3, H, W), labels (S, T, 3, H, W), float in [0, 1] or uint8 (converted
        chunk by chunk on the model's device). Sequence s draws its noise from its own generator
        seeded seeds[s], so rolling out S sequences together equals rolling them out one by one.
        Returns (S, T, 3, H, W) float on the model's device; frame 0 is the given first frame.
        """
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        S, T = labels.shape[:2]
        seeds = list(range(S)) if seeds is None else list(seeds)
        gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        to_float = lambda a: (a.to(device).float() / 255.0) if a.dtype == torch.uint8 else a.to(device).float()
        prev = to_float(first_frame)                                     # (S, 3, H, W)
        H, W = prev.shape[-2:]
        out = torch.empty(S, T, 3, H, W, device=device)
        out[:, 0] = prev
        context = self.context_of(prev, None, to_float(labels[:, 0]))   # anchor (S, 3, 1, 1), memory (S, F, H, W), origin
        step = compiled_rollout_step(device) if self.compile_rollout else VideoCVAE.rollout_step
        for start in range(1, T, label_chunk):
            label_feat = self.encode_labels(to_float(labels[:, start:start + label_chunk]))  # (S, c, L, H, W)
            for j in range(label_feat.shape[1]):
                eps = None if z_mode == "mean" else \
                    torch.stack([torch.randn(self.N_dim, H, W, generator=g, device=device) for g in gens])  # (S, N, H, W)
                step_context = self.at_pose(context, to_float(labels[:, start + j])) if self.memory_needs_pose else context
                prev = step(self, prev, label_feat[:, j], eps, step_context)     # (S, 3, H, W)
                out[:, start + j] = prev
            if progress is not None:
                progress.update(label_feat.shape[1])
        self.train(was_training)
        return out


def pose_ink(label: torch.Tensor) -> torch.Tensor:
    """How dark a pose image (B, 3, H, W) in [0, 1] (a skeleton on white) is at each pixel, (B, H, W): 0 on white."""
    return (1 - label.float().mean(1)).clamp(min=0)


def body_centre(label: torch.Tensor) -> torch.Tensor:
    """Where the body is in a pose image (B, 3, H, W) in [0, 1] (a skeleton on white): the centre of its
    ink, (B, 2) as (x, y) in pixels; the image's centre for a blank one."""
    ink = pose_ink(label)                                                # (B, H, W)
    H, W = ink.shape[-2:]
    total = ink.sum((1, 2))                                              # (B,)
    xs = torch.arange(W, device=ink.device, dtype=ink.dtype)
    ys = torch.arange(H, device=ink.device, dtype=ink.dtype)
    centre = torch.stack([(ink.sum(1) * xs).sum(1), (ink.sum(2) * ys).sum(1)], 1) / total.clamp(min=1e-6)[:, None]
    blank = torch.tensor([(W - 1) / 2, (H - 1) / 2], device=ink.device, dtype=ink.dtype)
    return torch.where(total[:, None] > 1e-3, centre, blank)             # (B, 2)


def body_mask(label: torch.Tensor, widen: int = 5) -> torch.Tensor:
    """Where the body is in a pose image (B, 3, H, W) in [0, 1] (thin pastel lines on white): its ink,
    widened by a `widen` x `widen` max-pool to cover the clothes around the bones and scaled so that its
    strongest pixel is 1, (B, 1, H, W); ~0 everywhere for a blank image."""
    wide = F.max_pool2d(pose_ink(label)[:, None], widen, stride=1, padding=widen // 2)
    return wide / wide.amax((2, 3), keepdim=True).clamp(min=1e-3)


def body_code(feat: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Frame 0's appearance without its place: its features (B, F, H, W) averaged over where its pose
    image `label` (B, 3, H, W) shows the body (`body_mask`), (B, F, 1, 1)."""
    mask = body_mask(label).to(feat.dtype)                               # (B, 1, H, W)
    return (feat * mask).sum((2, 3), keepdim=True) / mask.sum((2, 3), keepdim=True).clamp(min=1e-3)


def shift_features(feat: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """feat (B, C, H, W) moved by shift (B, 2) pixels (x right, y down): bilinear between the two
    nearest whole-pixel moves (exact for whole pixels), the edge rows and columns repeated."""
    out = _shift_along(feat, shift[:, 0], 3)
    return _shift_along(out, shift[:, 1], 2)


def _shift_along(feat: torch.Tensor, shift: torch.Tensor, dim: int) -> torch.Tensor:
    """feat moved by shift (B,) pixels along `dim` (2: rows, 3: columns): output[i] = feat[i - shift]."""
    n = feat.shape[dim]
    whole = torch.floor(shift.float())                                  # (B,)
    frac = (shift.float() - whole).to(feat.dtype)                       # (B,) in [0, 1)
    pos = torch.arange(n, device=feat.device)[None] - whole.long()[:, None]   # (B, n): the source of output i
    view = [-1, 1, 1, 1]
    view[dim] = n
    def take(src):                                                      # (B, n) -> feat's values there
        return feat.gather(dim, src.clamp(0, n - 1).view(view).expand_as(feat))
    w = frac.view(-1, 1, 1, 1)
    return (1 - w) * take(pos) + w * take(pos - 1)


@functools.cache
def _compiled_step(mode: str | None):
    return torch.compile(VideoCVAE.rollout_step, mode=mode)


def compiled_rollout_step(device: torch.device):
    """`VideoCVAE.rollout_step` under torch.compile: one compiled function per mode, the model an argument
    (Dynamo compiles again for a new model or shape, up to its recompile limit). On CUDA, mode
    "reduce-overhead": the step is replayed as a
    CUDA graph (one launch instead of ~40 small kernels per frame); its output buffer is reused by the
    next replay, so the frame is cloned before it is fed back."""
    if device.type != "cuda":
        return _compiled_step(None)
    graphed = _compiled_step("reduce-overhead")

    def step(model, prev, label_feat, eps, context):
        torch.compiler.cudagraph_mark_step_begin()
        return graphed(model, prev, label_feat, eps, context).clone()
    return step


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm2d, h: torch.Tensor, stats=None) -> None:
    """BatchNorm running-average updates for T consecutive steps; h: (B, T, C, H, W), taken in
    float32 whatever the autocast dtype of the activations (the running statistics are fp32);
    stats: (mean, unbiased var), (T*C,) each, of the whole batch over the ranks instead of h's."""
    h = h.float()
    T = h.shape[1]
    n = h.shape[0] * h.shape[3] * h.shape[4]
    if stats is not None:
        mean, var = (v.view(T, -1) for v in stats)
    else:
        mean = h.mean(dim=(0, 3, 4))                           # (T, C)
        var = h.var(dim=(0, 3, 4), unbiased=True) if n > 1 else torch.zeros_like(mean)
    for t in range(T):
        bn.num_batches_tracked += 1
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - m).add_(mean[t].to(bn.running_mean.dtype), alpha=m)
        bn.running_var.mul_(1 - m).add_(var[t].to(bn.running_var.dtype), alpha=m)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum",
                  prior_mu: torch.Tensor | None = None, prior_logvar: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per frame, or with prior_mu, prior_logvar given (the
    learned prior) KL(N(mu, exp(logvar)) || N(prior_mu, exp(prior_logvar))). All (frames, N, H, W).
    sum: the template's scale, summed over the N*H*W latent elements of a frame (24,576 at the
    default dims), averaged over frames; mean: averaged over elements too (the MSE's scale)."""
    if prior_mu is None:
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    else:    # two Gaussians, element by element: with d = logvar - prior_logvar, exp(d) - 1 - d (>= 0)
        d = logvar - prior_logvar   # written with expm1, which keeps a near-equal pair's KL from rounding below 0
        kl = 0.5 * (torch.expm1(d) - d + (mu - prior_mu).pow(2) * (-prior_logvar).exp())
    if reduction == "sum":
        return kl.sum() / mu.shape[0]
    if reduction == "mean":
        return kl.mean()
    raise ValueError(f"--kl_reduction {reduction!r}: expected sum or mean")


def cvae_loss(x_hat: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float, kl_reduction: str = "sum", prior_mu: torch.Tensor | None = None,
              prior_logvar: torch.Tensor | None = None):
    """loss = MSE(x_hat, x) (mean over frames and pixels) + beta * KL (per frame), the KL to N(0, I)
    or, given prior_mu and prior_logvar, to the learned prior. Returns (loss, mse, kl) as tensors;
    computed in float32 even under autocast."""
    mse = F.mse_loss(x_hat.float(), target.float())
    prior = {} if prior_mu is None else dict(prior_mu=prior_mu.float(), prior_logvar=prior_logvar.float())
    kl = kl_divergence(mu.float(), logvar.float(), kl_reduction, **prior)
    return mse + beta * kl, mse, kl
