"""The weights outside the optimiser's steps: where a fresh run starts (from the data), the moving
average that validation, checkpoints and lab4-test use, and the Label_Encoder BatchNorm's statistics
recalibrated to the weights they serve."""
from __future__ import annotations

import torch
import torch.nn as nn

from .model import VideoCVAE


def initialise_from_data(model: VideoCVAE, cfg, train_images) -> None:
    """The start of a fresh run (not a resume): the output head at the training frames' mean colour
    (train_images: uint8 (N, 3, H, W)), the posterior at the prior; each can be switched off
    (--init_output default, --init_posterior default: PyTorch's init, as the template)."""
    if cfg.init_output == "data":
        init_output_head(model, train_images.mean(axis=(0, 2, 3)) / 255.0)   # (3,) in [0, 1]
    if cfg.init_posterior == "prior":
        init_posterior_at_prior(model)


# ---- weight averaging -------------------------------------------------------------------
def weight_average(model: VideoCVAE, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the weights (torch's AveragedModel): after each step
    avg <- d * avg + (1 - d) * w with d = min(decay, (1 + n) / (10 + n)) after n updates, so that
    the average follows the fast early changes and settles to `decay` (0.98: about the last 50
    steps). The 630-frame rollout is sensitive to the last few steps' weights; their average scores
    higher and steadier (benchmarks/RESULTS.md). BatchNorm buffers are recalibrated, not averaged."""
    def update(averaged: list, current: list, n) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        torch._foreach_lerp_(averaged, current, 1.0 - d)
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=update, use_buffers=False)


# ---- initialisation from the data --------------------------------------------------------
@torch.no_grad()
def init_output_head(model: VideoCVAE, mean_rgb, weight_scale: float | None = None) -> None:
    """Start the Generator where the data is: its last 1x1 conv's bias becomes the training
    frames' mean colour (through the inverse of the output bound: logit for the sigmoid head), so
    the first predictions already have the data's brightness instead of sigmoid(0) = 0.5 (or ~0
    unbounded). A bright studio sits near 0.9, where a sigmoid head started at 0 needs hundreds of
    steps of vanishing gradients to arrive. The sigmoid head keeps PyTorch's weights (scale 1):
    shrinking them x0.1, as lab4 did before, only slowed the start (RESULTS 6g: quick 25.9 -> 26.3 dB
    end, template flags 24.96 -> 25.45 dB, synth-quality seed 1). The unbounded head still shrinks
    them x0.1: its features are >= 0 after LeakyReLU, so full weights shift the start by ~0.3."""
    if weight_scale is None:
        weight_scale = 1.0 if model.sigmoid_output else 0.1
    head = model.Generator[-1]                                          # Conv2d(D/8 -> 3, 1x1)
    mean = torch.as_tensor(mean_rgb, dtype=torch.float32).clamp(0.02, 0.98)   # (3,)
    if model.colour_anchor:                                             # the anchor supplies the colour
        head.bias.zero_()
    else:
        head.bias.copy_(torch.logit(mean) if model.sigmoid_output else mean)
    head.weight.mul_(weight_scale)


@torch.no_grad()
def init_posterior_at_prior(model: VideoCVAE, weight_scale: float = 0.01) -> None:
    """Start q(z | x, p) at N(0, I): the Gaussian_Predictor's last 1x1 conv (-> mu, logvar) gets
    zero bias and weights shrunk by `weight_scale`. At PyTorch's default initialisation the KL,
    summed over the 12x32x64 latents as the template does, starts near 10^3 with a gradient
    ~10^4 times the MSE's; after clipping at norm 1 the first steps then learn almost nothing but
    the KL. Started at the prior, the KL starts near 0 and its gradient is ~400x smaller (full dims:
    norm 5,190 -> 12), so the reconstruction's share of the clipped step grows by as much.
    A learned prior p(z | x_{t-1}, p) starts at N(0, I) the same way."""
    for predictor in (model.Gaussian_Predictor, model.learned_prior):
        if predictor is not None:
            head = predictor[-1]                                        # Conv2d(N -> 2N, 1x1)
            head.weight.mul_(weight_scale)
            head.bias.zero_()


@torch.no_grad()
def recalibrate_label_batchnorm(model: VideoCVAE, labels: torch.Tensor, max_frames: int = 2048) -> None:
    """Set the Label_Encoder BatchNorm's running statistics to the statistics of its input under
    the current weights, over up to `max_frames` training pose images spread evenly over the set
    ("precise BatchNorm"). Why: a pose image is white but for a thin skeleton, so the conv before
    the BatchNorm outputs nearly a constant per channel (std ~0.01 around a mean ~0.5), and the
    running mean, updated during the forward pass of a step whose optimizer update then moves the
    weights, lags the weights by one step: a lag of 0.01 is most of a standard deviation, the
    normalised pose features at inference are shifted everywhere, and the rollout (BatchNorm in eval
    mode) decodes a blank frame while training, on batch statistics, looks fine.
    labels: (N, 3, H, W) tensor, uint8 or float in [0, 1], on any device."""
    pad, conv, bn = (model.label_transformation[i] for i in range(3))
    if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
        return
    device = conv.weight.device
    idx = torch.linspace(0, len(labels) - 1, min(max_frames, len(labels))).round().long()
    total = sq = None
    count = 0
    for chunk in idx.split(256):
        p = labels[chunk.to(labels.device)].to(device)                   # (n, 3, H, W)
        p = p.float() / 255 if p.dtype == torch.uint8 else p.float()
        h = conv(pad(p)).double()                                          # (n, C, H, W)
        s, s2 = h.sum(dim=(0, 2, 3)), h.pow(2).sum(dim=(0, 2, 3))
        total, sq = (s, s2) if total is None else (total + s, sq + s2)
        count += h.shape[0] * h.shape[2] * h.shape[3]
    mean = total / count
    var = (sq / count - mean.pow(2)).clamp_min(0) * count / max(count - 1, 1)   # unbiased, as BatchNorm keeps
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))
