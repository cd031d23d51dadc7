"""lab4: conditional-VAE video prediction (NYCU DL Lab 4), as a small importable package.

    from lab4 import make_config, train, load_split, VideoCVAE
"""
from .config import PRESETS, SMOKE_ENV, TrainConfig, make_config, smoke_mode
from .errors import Lab4Error
from .model import VideoCVAE, cvae_loss, kl_divergence
from .schedules import frange_cycle_linear, kl_beta_schedule, learning_rate, teacher_forcing_ratio

__version__ = "0.1.0"


def __getattr__(name):  # heavier submodules load on first use
    import importlib
    lazy = {"load_split": ".data", "SequenceBatches": ".data", "load_model": ".checkpoint",
            "validate": ".evaluate", "predict_test": ".infer", "write_test_outputs": ".infer",
            "write_validation_outputs": ".evaluate", "compare_runs": ".evaluate", "train": ".train", "kaggle_score": ".score", "write_submission": ".score",
            "read_submission": ".score"}
    if name in lazy:
        return getattr(importlib.import_module(lazy[name], __name__), name)
    raise AttributeError(f"module 'lab4' has no attribute {name!r}")
