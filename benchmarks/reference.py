"""The template's way of loading, training and testing, re-implemented from the spec
(/work/shared/LAB4_SPEC.md and the course template's structure) as the benchmarks' reference.

- `TemplateDataset`: the template's Dataset_Dance in train mode: every `__getitem__` opens the
  sequence's 16 image and 16 label PNGs with PIL (torchvision's `default_loader`) and applies
  `Compose([Resize((32, 64)), ToTensor()])`; served through a DataLoader(batch_size=2, shuffle).
- `TemplateTestDataset`: the test loader: first frame + 630 pose PNGs per sequence.
- `template_train_step`: the template's training_one_step: a per-time-step loop with separate
  encoder calls (the current frame for the posterior, the previous frame again for the
  decoder), fp32, then backward, clip_grad_norm_(1.0) and the optimiser step.
- `template_rollout`: the template's val_one_step for one test sequence, under torch.no_grad():
  per step encode the pose, encode the previous generated frame, draw z, decode.
- `template_write_submission`: pandas DataFrame of rint(x * 255) ints, `id` column, to_csv.

The modules are the package's (same weights, same maths); only the way they are driven differs.
tests/test_benchmarks_reference.py proves these produce the package's results.
"""
from __future__ import annotations

import os
import re
from glob import glob

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets.folder import default_loader as imgloader

_KEY = re.compile(r"frame(\d+)\.png$", re.IGNORECASE)


def get_key(fp: str) -> int:
    """Numeric sort key of frame<N>.png, as the template's get_key."""
    return int(_KEY.search(os.path.basename(fp)).group(1))


def template_transform(H: int = 32, W: int = 64):
    return transforms.Compose([transforms.Resize((H, W)), transforms.ToTensor()])


class TemplateDataset(Dataset):
    """Dataset_Dance(mode='train'): item = (imgs, labels), each float (video_len, 3, H, W)."""

    def __init__(self, root, transform=None, mode: str = "train", video_len: int = 16, partial: float = 1.0):
        assert mode in ("train", "val")
        self.img_folder = sorted(glob(os.path.join(str(root), f"{mode}/{mode}_img/*.png")), key=get_key)
        self.prefix = mode
        self.transform = transform or template_transform()
        self.partial = partial
        self.video_len = video_len

    def __len__(self) -> int:
        return int(len(self.img_folder) * self.partial) // self.video_len

    def __getitem__(self, index: int):
        imgs, labels = [], []
        for i in range(self.video_len):
            img_name = self.img_folder[index * self.video_len + i]
            label_list = img_name.split(os.sep)
            label_list[-2] = self.prefix + "_label"
            label_name = os.sep.join(label_list)
            imgs.append(self.transform(imgloader(img_name)))
            labels.append(self.transform(imgloader(label_name)))
        return torch.stack(imgs), torch.stack(labels)


class TemplateTestDataset(Dataset):
    """The test loader: item k = (first frame (1, 3, H, W), poses (630, 3, H, W)) of sequence k."""

    def __init__(self, root, transform=None):
        root = str(root)
        self.seqs = sorted(os.listdir(os.path.join(root, "test", "test_img")), key=int)
        self.root = root
        self.transform = transform or template_transform()

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, index: int):
        k = self.seqs[index]
        imgs = sorted(glob(os.path.join(self.root, "test", "test_img", k, "*.png")), key=get_key)
        labels = sorted(glob(os.path.join(self.root, "test", "test_label", k, "*.png")), key=get_key)
        first = self.transform(imgloader(imgs[0]))[None]
        return first, torch.stack([self.transform(imgloader(p)) for p in labels])


# ---- training ----------------------------------------------------------------------------
def kl_criterion(mu: torch.Tensor, logvar: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The template's KL: summed over all latent elements, divided by the batch size."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch_size


def template_forward(model, img: torch.Tensor, label: torch.Tensor, teacher_forcing: bool,
                     beta: float = 1.0, eps: torch.Tensor | None = None):
    """The loop of training_one_step. img, label: (B, T, 3, H, W); eps: optional (B, T-1, N, H, W).
    Returns (loss, frames (B, T-1, 3, H, W)). The per-step MSE and KL are summed as in the
    template and divided by T-1 (a constant factor, no effect on cost) so the loss equals the
    package's cvae_loss."""
    img = img.permute(1, 0, 2, 3, 4)        # (T, B, C, H, W), as the template does
    label = label.permute(1, 0, 2, 3, 4)
    T, B = img.shape[:2]
    mse = kl = 0.0
    x_prev, frames = img[0], []
    for i in range(1, T):
        label_feat = model.label_transformation(label[i])
        human_feat_hat = model.frame_transformation(img[i])
        z, mu, logvar = model.Gaussian_Predictor(human_feat_hat, label_feat, None if eps is None else eps[:, i - 1])
        prev_feat = model.frame_transformation(x_prev)
        out = model.Generator(model.Decoder_Fusion(prev_feat, label_feat, z))
        if getattr(model, "sigmoid_output", False):
            out = torch.sigmoid(out)
        mse = mse + F.mse_loss(out, img[i])
        kl = kl + kl_criterion(mu, logvar, B)
        frames.append(out)
        x_prev = img[i] if teacher_forcing else out
    loss = (mse + beta * kl) / (T - 1)
    return loss, torch.stack(frames, 1)


def template_train_step(model, optimizer, img, label, teacher_forcing: bool, beta: float = 1.0,
                        clip: float = 1.0, eps=None) -> float:
    """One template optimisation step (fp32): loop forward, backward, clip at 1.0, step."""
    loss, _ = template_forward(model, img, label, teacher_forcing, beta, eps)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.detach().cpu().item()


# ---- inference ---------------------------------------------------------------------------
@torch.no_grad()
def template_rollout(model, first_frame: torch.Tensor, labels: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One sequence the template's way. first_frame (3, H, W) or (1, 3, H, W); labels (T, 3, H, W)
    in [0, 1]. Per step: encode the pose, encode the previous generated frame, draw
    z = randn(N, H, W, generator) (what VideoCVAE.rollout draws per sequence), decode.
    Returns (T, 3, H, W); frame 0 is the given frame."""
    model.eval()
    H, W = labels.shape[-2:]
    prev = first_frame.reshape(1, 3, H, W).float()
    decoded = [prev[0].cpu()]
    for i in range(1, labels.shape[0]):
        label_feat = model.label_transformation(labels[i:i + 1].float())
        prev_feat = model.frame_transformation(prev)
        z = torch.randn(model.N_dim, H, W, generator=generator)[None]
        out = model.Generator(model.Decoder_Fusion(prev_feat, label_feat, z))
        if getattr(model, "sigmoid_output", False):
            out = torch.sigmoid(out)
        decoded.append(out[0].cpu())
        prev = out
    return torch.stack(decoded)


def template_write_submission(pred_seqs: list[torch.Tensor], path) -> None:
    """Tester's CSV: each sequence (T, 3, H, W) -> rows; rint(x * 255) as int; id column."""
    rows = torch.cat([p.reshape(p.shape[0], -1) for p in pred_seqs]).cpu().numpy()
    df = pd.DataFrame(np.rint(rows * 255).astype(int))
    df.insert(0, "id", range(0, len(df)))
    df.to_csv(path, header=True, index=False)


def template_predict_test(model, loader, seed: int = 0, n_frames: int | None = None) -> list[torch.Tensor]:
    """All test sequences one at a time from a DataLoader over TemplateTestDataset (batch 1).
    Sequence k draws its noise from torch.Generator().manual_seed(seed * 1000 + k), the seeds
    lab4.infer.predict_test gives VideoCVAE.rollout. n_frames: roll out only a prefix."""
    out = []
    for k, (first, labels) in enumerate(loader):
        g = torch.Generator().manual_seed(seed * 1000 + k)
        lab = labels[0] if n_frames is None else labels[0, :n_frames]
        out.append(template_rollout(model, first[0], lab, g))
    return out
