"""The template's training loop written plainly, one time step at a time: the readable reference
that the batched `VideoCVAE.forward` is tested equal to (tests/test_modules.py) and that notebook
00 walks through line by line. Not used for training (forward batches the time steps)."""
from __future__ import annotations

import torch


def forward_stepwise(model, x: torch.Tensor, p: torch.Tensor, teacher_forcing: bool,
                     eps: torch.Tensor | None = None, memory: tuple | None = None):
    """x, p: (B, T, 3, H, W) frames and poses in [0, 1]; eps: optional (B, T-1, N, H, W) noise.
    Per time step t = 1..T-1: encode the current frame and pose, draw z from the posterior
    q(z | x_t, p_t), encode the previous frame (the true one with teacher forcing, else the
    model's own prediction), decode. Returns (x_hat (B, T-1, 3, H, W), mu, logvar (B*(T-1), N, H, W)),
    as `VideoCVAE.forward` does; with a learned prior also its prior_mu, prior_logvar given the
    previous frame's feature (the decoder's) and the pose's. memory: the (frame, pose) the appearance
    memory is taken from (--memory_gap), else the first frame's."""
    prev, frames, mus, logvars, priors = x[:, 0], [], [], [], []     # prev: (B, 3, H, W)
    context = model.context_of(x[:, 0], None, p[:, 0], memory)       # anchor, memory, origin, body code (or None)
    for t in range(1, x.shape[1]):
        frame_feat = model.frame_transformation(x[:, t])             # (B, F, H, W)
        label_feat = model.label_transformation(p[:, t])             # (B, L, H, W)
        z, mu, logvar = model.Gaussian_Predictor(frame_feat, label_feat,
                                                 None if eps is None else eps[:, t - 1])   # (B, N, H, W) each
        prev_feat = model.frame_transformation(prev)                 # (B, F, H, W)
        if model.learned_prior is not None:                          # p(z_t | x_{t-1}, p_t)
            priors.append(model.learned_prior.distribution(prev_feat, label_feat))
        frame = model.generate(prev_feat, label_feat, z, model.at_pose(context, p[:, t]))   # (B, 3, H, W)
        frames.append(frame), mus.append(mu), logvars.append(logvar)
        prev = x[:, t] if teacher_forcing else frame                 # the teacher-forcing switch
    flat = lambda ts: torch.stack(ts, 1).flatten(0, 1)   # noqa: E731
    out = torch.stack(frames, 1), flat(mus), flat(logvars)
    if model.learned_prior is None:
        return out
    return (*out, flat([m for m, _ in priors]), flat([v for _, v in priors]))
