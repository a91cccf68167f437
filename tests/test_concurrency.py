"""Two threads computing with one model: the dashboard explains in the background while notebook
cells explain and predict in the main thread. Results must be what each computation gives alone."""
from __future__ import annotations

import threading
import time

import numpy as np
import torch
from torch import nn

import explainkit as ek
from explainkit.models.incremental import IncrementalForward


def run_together(*loops, timeout=300):
    """Run each loop in its own thread; return the exceptions they raised."""
    failures = []

    def guard(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - collected and asserted on by the caller
            failures.append(exc)

    threads = [threading.Thread(target=guard, args=(fn,)) for fn in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return failures


def test_tracing_does_not_disturb_forward_passes_in_other_threads():
    """torch.fx patches nn.Module.__call__ process-wide while it traces, so a trace in one thread must
    leave the other's forward passes alone (it used to hand them proxies: a TraceError)."""
    module = ek.load_sample("mnist-cnn").module
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        want = module(x)
    original_call = nn.Module.__call__
    stop, passes = threading.Event(), [0]

    def forward_loop():
        while not stop.is_set():
            with torch.no_grad():
                got = module(x)
            assert isinstance(got, torch.Tensor), type(got)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
            passes[0] += 1

    def trace_loop():
        try:
            for _ in range(40):
                assert IncrementalForward.build(module) is not None
        finally:
            stop.set()

    assert run_together(forward_loop, trace_loop, trace_loop) == []
    assert passes[0] > 0
    assert nn.Module.__call__ is original_call      # every patch undone, in order


def test_layer_hooks_and_traces_do_not_leak_between_threads(load_data):
    model = ek.load_sample("mnist-cnn")                  # its own copy: no engine built yet
    data = load_data("mnist-cnn")
    one = [data[i][0] for i in range(2)]
    other = [data[i][0] for i in range(10, 15)]
    alone = {
        "gradcam": ek.explain(model, one, "gradcam"),
        "ig": ek.explain(model, other, "integrated_gradients", n_steps=16),
        "probs": model.predict([model.prepare(r) for r in other]),
    }
    alone["deletion"] = alone["gradcam"][0].quality(model, metrics=["deletion"], steps=98).deletion.auc

    def background():                                    # the dashboard: Grad-CAM hooks, deletion curves
        for _ in range(12):
            for a, b in zip(ek.explain(model, one, "gradcam"), alone["gradcam"]):
                np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
            model.incremental = True                     # the curves trace the module again
            q = alone["gradcam"][0].quality(model, metrics=["deletion"], steps=98)
            assert abs(q.deletion.auc - alone["deletion"]) < 1e-6

    def notebook():                                      # the user's cells: explain and predict
        for _ in range(12):
            for a, b in zip(ek.explain(model, other, "integrated_gradients", n_steps=16), alone["ig"]):
                np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(model.predict([model.prepare(r) for r in other]), alone["probs"],
                                       atol=1e-6)

    assert run_together(background, notebook) == []


def test_dashboard_attention_is_the_selected_samples_while_an_explanation_runs(load_data):
    """Selecting a sample computes its attention in the kernel's thread while the previous sample's
    explanation may still run in the background, with captum's hook replacing the embedding output."""
    model = ek.load_sample("sst2-transformer")
    data = load_data("sst2-transformer").subset(range(24))
    samples = [model.prepare(data[i][0]) for i in range(len(data))]
    want = [model.attention([s])[0] for s in samples]
    d = ek.Dashboard(model, data, methods=["smoothgrad"], quality=False)
    d.set_params(n_samples=1000)          # long enough to be running at the next select
    assert d.wait(120)
    for i in range(1, len(data)):
        d.select(i)                       # the previous select's explanation is still running
        np.testing.assert_allclose(d._attention_cache[i], want[i], atol=1e-6)
        time.sleep(0.1)                   # into its hooked forward passes (a job takes 0.1-0.3 s)
    assert d.wait(120)
