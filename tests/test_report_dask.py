"""Reports on a Dask LocalCluster (2 processes, 1 thread each): same numbers as serial, even when a worker dies."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import explainkit

pytest.importorskip("distributed")

METHODS = ["saliency", "gradcam"]


def same(a, b):
    """Equal up to float rounding: workers run torch on one thread, the serial run on several."""
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


@pytest.fixture(scope="module")
def serial(mnist_cnn, load_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("serial")
    data = load_data("mnist-cnn").subset(range(12))
    return explainkit.report(mnist_cnn, data, methods=METHODS, out=d / "s.html", batch_size=3, progress=False), data


def test_dask_run_matches_serial_and_workers_are_set_up(serial, tmp_path, mnist_cnn):
    ref, data = serial
    seen = {}

    def on_progress(event):          # the LocalCluster report() starts itself, seen from its client
        if "client" in event:
            seen.update(event["client"].run(
                lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), __import__("torch").get_num_threads())))

    rep = explainkit.report(mnist_cnn, data, methods=METHODS, out=tmp_path / "d.html", batch_size=3,
                            progress=False, executor="dask", workers=2, on_progress=on_progress)
    assert len(seen) == 2 and set(seen.values()) == {("65536", 1)}   # set before spawn; one torch thread
    assert rep.index["executor"] == {"executor": "dask", "workers": 2, "address": None}
    assert rep.index["counts"]["computed"] == 24
    for m in METHODS:
        same(rep.attributions(m), ref.attributions(m))


def test_a_killed_worker_loses_no_chunk(serial, mnist_cnn, tmp_path):
    ref, data = serial
    state = {"pids": None, "killed": None}

    def on_progress(event):
        if "client" in event:
            state["pids"] = event["client"].run(os.getpid)
        elif event["chunks"] == 1 and state["killed"] is None:     # part-way: kill a worker process
            addr, pid = sorted(state["pids"].items())[0]
            os.kill(pid, signal.SIGKILL)
            state["killed"] = addr

    rep = explainkit.report(mnist_cnn, data, methods=METHODS, out=tmp_path / "k.html", batch_size=3,
                            progress=False, executor="dask", workers=2, on_progress=on_progress)
    assert state["killed"] is not None
    assert rep.index["counts"]["computed"] == 24 and rep.index["counts"]["cached"] == 0
    for m in METHODS:
        same(rep.attributions(m), ref.attributions(m))
