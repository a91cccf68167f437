"""A report killed part-way (SIGKILL) loses nothing: the re-run computes only the missing explanations."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np


def _cli(tmp_path, *extra):
    return [sys.executable, "-m", "explainkit.cli", "report", "--model", "sample:mnist-cnn", "--data", "sample",
            "--methods", "saliency,occlusion", "--limit", "40", "--seed", "0", "--out", str(tmp_path / "r.html"),
            "--cache-dir", str(tmp_path / "cache"), *extra]


def test_killed_run_resumes_with_only_the_missing_explanations(tmp_path, mnist_cnn, load_data):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(_cli(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cache = tmp_path / "cache"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(cache.glob("*/*.ekc"))) >= 8:       # at least one chunk persisted
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    survived = len(list(cache.glob("*/*.ekc")))
    assert 8 <= survived < 80
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.json").exists()   # nothing half-written

    done = subprocess.run(_cli(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = json.loads((tmp_path / "r.json").read_text())["counts"]
    assert counts == {"samples": 40, "explanations": 80, "computed": 80 - survived, "cached": survived,
                      "corrupt_recomputed": 0}
    assert f"{80 - survived} computed, {survived} from cache" in done.stdout
    # the resumed export holds the explainer's real numbers for every sample
    data = load_data("mnist-cnn")
    from explainkit.plugins.runner import run_explainer
    direct = run_explainer("saliency", mnist_cnn, [mnist_cnn.prepare(data.raws[i], None, i) for i in range(8)])
    with np.load(tmp_path / "r.npz") as z:
        assert z["occlusion.scores"].shape == (40, 28, 28)
        np.testing.assert_allclose(z["saliency.scores"][:8], np.stack([e.scores for e in direct]), rtol=1e-4,
                                   atol=1e-6)
