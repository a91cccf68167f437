"""Browser-test fixtures: hermetic Jupyter dirs, a JupyterLab server on a copy of the notebooks, and a
Playwright page on Debian's chromium whose route guard aborts (and records) every non-local request."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from ekserver import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LOCAL_PREFIXES, NB_DIR, jupyter_env, start_jupyter_lab


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real chromium against a Jupyter server (slow, ~1 min)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session", autouse=True)
def hermetic_jupyter(tmp_path_factory):
    """Every Jupyter dir in a temp dir, also for the chromium that Playwright launches (crashpad)."""
    base = tmp_path_factory.mktemp("jupyter-home")
    env = jupyter_env(base)
    mp = pytest.MonkeyPatch()
    for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_PLATFORM_DIRS",
              "IPYTHONDIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        mp.setenv(k, env[k])
    yield base
    mp.undo()


@pytest.fixture(scope="session")
def nb_root(tmp_path_factory):
    """A copy of the notebooks: Lab's autosave and trust must never touch the source files."""
    dst = tmp_path_factory.mktemp("lab") / "nbroot"
    shutil.copytree(NB_DIR, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dst


class Timer:
    """Seconds since the test started, per named step; printed and appended to artifacts/timings.jsonl."""

    def __init__(self, name):
        self.name, self.t0, self.marks = name, time.perf_counter(), {}

    def mark(self, label):
        self.marks[label] = round(time.perf_counter() - self.t0, 2)

    def dump(self):
        rec = {"test": self.name, **self.marks}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with (ARTIFACTS / "timings.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print("\nTIMING", json.dumps(rec))


@pytest.fixture
def timer(request):
    t = Timer(request.node.name)
    yield t
    rep = getattr(request.node, "rep_call", None)
    t.marks["passed"] = bool(rep and rep.passed)
    t.dump()


@pytest.fixture(scope="session")
def lab_server(nb_root, tmp_path_factory):
    """One JupyterLab for the session (each test opens its own notebook and kernel)."""
    srv = start_jupyter_lab(nb_root, tmp_path_factory.mktemp("lab-server"))
    yield srv
    srv.stop(timeout=5)   # its kernels that are still shutting down then exit with it (their parent poller)


@pytest.fixture(scope="session")
def browser(hermetic_jupyter):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    blocked: list[str] = []

    def guard(route):            # offline guarantee: anything non-local is aborted and recorded
        if route.request.url.startswith(LOCAL_PREFIXES):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.ek_blocked, pg.ek_errors = blocked, errors
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
        except Exception as e:  # noqa: BLE001 - a failed screenshot must not hide the test failure
            print("screenshot failed:", e)
        print("page errors:", *errors, sep="\n  ")
        print("blocked requests:", *blocked, sep="\n  ")
    ctx.close()
