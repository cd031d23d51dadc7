"""Training precision chosen by the device (mocked GPUs), the GradScaler's place in the step and the
checkpoint, and the RNG of the device in use only."""
import json

import pytest
import torch

from lab4.config import make_config
from lab4.device import choose_precision
from lab4.errors import Lab4Error
from lab4.checkpoint import rng_state as _rng_state, set_rng_state as _set_rng_state
from lab4.train import Run, train

CPU, GPU = torch.device("cpu"), torch.device("cuda:0")


@pytest.mark.parametrize("capability, amp, expected", [
    ((9, 0), True, "bf16"),     # H100
    ((8, 6), True, "bf16"),     # RTX 30xx
    ((8, 0), True, "bf16"),     # A100
    ((7, 5), True, "fp16"),     # T4, RTX 20xx: no native bfloat16
    ((7, 0), True, "fp16"),     # V100
    ((6, 0), True, "fp32"),     # P100
    ((9, 0), False, "fp32"),    # --no-amp
])
def test_auto_precision_follows_the_compute_capability(capability, amp, expected):
    assert choose_precision("auto", GPU, amp=amp, capability=capability) == expected


def test_explicit_precisions_and_the_cpu():
    assert choose_precision("auto", CPU) == "fp32"
    assert choose_precision("auto", CPU, cpu_amp=True) == "bf16"
    assert choose_precision("bf16", CPU) == "bf16"
    assert choose_precision("fp32", GPU, capability=(9, 0)) == "fp32"
    assert choose_precision("fp16", GPU, capability=(9, 0)) == "fp16"
    with pytest.raises(Lab4Error, match=r"--precision bf16: cuda:0 has compute capability 7\.5"):
        choose_precision("bf16", GPU, capability=(7, 5))
    with pytest.raises(Lab4Error, match="--precision fp16: for CUDA GPUs only"):
        choose_precision("fp16", CPU)
    with pytest.raises(Lab4Error, match="--precision 'half': expected one of auto, fp32, bf16, fp16"):
        choose_precision("half", CPU)


def test_the_template_preset_trains_in_fp32():
    assert make_config("template").precision == "fp32"
    assert choose_precision(make_config("template").precision, GPU, capability=(9, 0)) == "fp32"


@pytest.mark.slow
def test_the_choice_is_logged_first_and_recorded(mini_data, tmp_path, smoke_config):
    lines = []
    train(smoke_config(mini_data, tmp_path / "run", num_epoch=1, steps_per_epoch=1), progress=False,
          log=lines.append)
    assert lines[0].startswith("lab4-train: cpu, precision fp32 (auto)"), lines[0]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["precision"] == "fp32"
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert ckpt["config"]["precision"] == "fp32" and "grad_scaler" not in ckpt


@pytest.mark.slow
def test_fp16_steps_through_a_grad_scaler_whose_state_is_saved(mini_data, tmp_path, smoke_config, monkeypatch):
    """fp16 is CUDA-only; the scaler's bookkeeping is device-independent, so the step is checked on the
    CPU with choose_precision forced to fp16 (the CPU autocast runs float16 too, slowly)."""
    import lab4.train as train_module
    monkeypatch.setattr(train_module, "choose_precision", lambda *a, **k: "fp16")
    run = Run(smoke_config(mini_data, tmp_path / "run", num_epoch=1, steps_per_epoch=2), progress=False,
              log=lambda s: None)
    assert run.scaler is not None and run.cfg.precision == "fp16"
    calls = []
    real_step = run.scaler.step
    monkeypatch.setattr(run.scaler, "step", lambda opt: calls.append(1) or real_step(opt))
    run.fit()
    assert len(calls) == 2
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert {"scale", "_growth_tracker"} <= set(ckpt["grad_scaler"])   # GradScaler.state_dict()


def test_rng_state_is_the_device_in_uses_only(monkeypatch):
    seen = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: seen.setdefault("get", device) and torch.zeros(4, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state saved"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: seen.setdefault("set", (state, device)))
    state = _rng_state(torch.device("cuda:1"))
    assert seen["get"] == torch.device("cuda:1") and state["cuda"].shape == (4,)
    _set_rng_state(state, torch.device("cuda:0"))              # a machine with fewer GPUs: still resumes
    assert seen["set"][1] == torch.device("cuda:0")
    seen.clear()
    old = {"torch": torch.get_rng_state(), "cuda": [torch.full((4,), k, dtype=torch.uint8) for k in range(2)]}
    _set_rng_state(old, torch.device("cuda:3"))                # version <= 3: a list, one per GPU of that machine
    assert int(seen["set"][0][0]) == 0                         # the first (the one --device cuda used), not an
    assert seen["set"][1] == torch.device("cuda:3")            # invalid ordinal; set on the device in use


@pytest.mark.slow
def test_a_resumed_run_chooses_its_precision_again(mini_data, tmp_path, smoke_config, monkeypatch):
    """A run saved in fp16 on a T4 resumes on the CPU (fp32 there), unless --precision is given now."""
    import lab4.train as train_module
    from lab4.checkpoint import read_checkpoint
    from lab4.config import resolve_resume_config
    with monkeypatch.context() as m:
        m.setattr(train_module, "choose_precision", lambda *a, **k: "fp16")
        train(smoke_config(mini_data, tmp_path / "run", num_epoch=1, steps_per_epoch=1), progress=False,
              log=lambda s: None)
    ckpt_path = str(tmp_path / "run" / "last.ckpt")
    assert torch.load(ckpt_path, weights_only=True)["config"]["precision"] == "fp16"
    again = smoke_config(mini_data, tmp_path / "run", num_epoch=2, steps_per_epoch=1, ckpt_path=ckpt_path)
    resumed = resolve_resume_config(again, {"num_epoch": 2}, read_checkpoint(ckpt_path))
    assert resumed.precision == "auto"
    lines = []
    Run(resumed, progress=False, log=lines.append).fit()
    assert lines[0].startswith("lab4-train: cpu, precision fp32 (auto)")
    assert resolve_resume_config(again, {"precision": "bf16"}, read_checkpoint(ckpt_path)).precision == "bf16"
