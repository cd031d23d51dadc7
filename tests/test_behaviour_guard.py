"""The refactor's guard: a fixed-seed smoke run through lab4-train and lab4-test gives the metrics,
the submission bytes and the checkpoint keys recorded before the code was moved
(tests/behaviour_guard.py --record writes them; re-record only for an intended change of behaviour)."""
import json

import pytest

from behaviour_guard import FINGERPRINT, fingerprint

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_a_fixed_seed_run_is_unchanged(mini_data, tmp_path):
    recorded = json.loads(FINGERPRINT.read_text())
    now = fingerprint(tmp_path, data=mini_data)
    for key in ("checkpoint_keys", "config_keys", "state_dict_keys", "optimizer_state_len"):
        assert now[key] == recorded[key], key
    if now["machine"]["cpu_capability"] != recorded["machine"]["cpu_capability"]:
        pytest.skip(f"recorded on a {recorded['machine']['cpu_capability']} CPU, this one is "
                    f"{now['machine']['cpu_capability']}: float results differ in the last bits across vector units")
    assert now["metrics_csv"] == recorded["metrics_csv"]
    assert now["val_psnr_csv_sha256"] == recorded["val_psnr_csv_sha256"]
    assert now["submission_sha256"] == recorded["submission_sha256"]
