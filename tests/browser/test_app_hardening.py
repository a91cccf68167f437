"""`explainkit app` hardening: the token stays off every command line, kernels are capped and idle ones
culled, a restart on the same port works at once, and a model that fails to load is one `ek-error` message."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ekserver import ROOT, app_running, start_app
from playwright.sync_api import expect

SESSIONS = 20            # page loads in the load test
REQUEST_TIMEOUT_S = 240  # a limit per page load (the notebook runs while the page streams in)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    """pid -> parent pid, for every process (the field after the ')' of /proc/<pid>/stat)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(entry)] = int(fields[1])
    return out


def _descendants(pid: int) -> list[int]:
    parents, found, todo = _parents(), [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def _voila_pid(srv) -> int:
    pids = [p for p in _descendants(srv.proc.pid) if " -m voila " in _cmdline(p)]
    assert len(pids) == 1, [(p, _cmdline(p)) for p in _descendants(srv.proc.pid)]
    return pids[0]


def _kernels(voila: int) -> list[int]:
    """Live kernel processes of that Voila (a zombie has an empty cmdline and is not counted)."""
    return [p for p in _descendants(voila) if "ipykernel" in _cmdline(p)]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=REQUEST_TIMEOUT_S) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _wait_until(cond, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.25)
    return cond()


def test_token_is_never_on_a_command_line(tmp_path):
    with app_running(tmp_path, "--max-kernels", "1") as srv:
        voila = _voila_pid(srv)
        assert len(srv.token) >= 24
        # /proc/<pid>/cmdline is world-readable: neither the CLI, nor Voila, nor a kernel may carry the token
        for pid in [srv.proc.pid, voila, *_descendants(voila)]:
            cmd = _cmdline(pid)
            assert cmd and srv.token not in cmd, (pid, cmd)
        # it lives in a file only the owner can read, in a private dir
        cwd = Path(os.readlink(f"/proc/{voila}/cwd"))
        assert stat.S_IMODE(cwd.stat().st_mode) == 0o700
        cfg = cwd / "voila.json"
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and srv.token in cfg.read_text()

        status, _ = _get(srv.base + "/")                          # no token: login redirect, no kernel
        assert status in (302, 401, 403), status
        status, _ = _get(srv.base + "/?token=" + "x" * len(srv.token))   # a wrong token: the same
        assert status in (302, 401, 403), status
        assert _kernels(voila) == []
        status, body = _get(srv.app_url)                          # the printed URL works
        assert status == 200 and "application/vnd.jupyter.widget-view+json" in body, (status, body[-2000:])
        assert len(_kernels(voila)) == 1
    assert srv.proc.returncode == 0, srv.log.read_text()[-2000:]


def test_kernels_are_capped_and_idle_ones_are_culled(tmp_path):
    cap = 2
    srv = start_app(tmp_path, "--max-kernels", str(cap), "--cull-idle-timeout", "5")
    stop = threading.Event()
    seen: list[int] = []

    def watch(voila):
        while not stop.is_set():
            seen.append(len(_kernels(voila)))
            stop.wait(0.1)

    try:
        voila = _voila_pid(srv)
        watcher = threading.Thread(target=watch, args=(voila,), daemon=True)
        watcher.start()
        with ThreadPoolExecutor(SESSIONS) as pool:          # 20 page loads at once, to 127.0.0.1 only
            results = list(pool.map(_get, [srv.app_url] * SESSIONS, timeout=REQUEST_TIMEOUT_S * 2))
        statuses = sorted(s for s, _ in results)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
        for status, body in results:
            if status == 503:                                   # the refusal names the problem and the fix
                assert "kernels of this explainkit app are in use" in body and "--max-kernels" in body, body
        # idle kernels (no page connected) are shut down after --cull-idle-timeout, freeing their slots
        assert _wait_until(lambda: _kernels(voila) == [], 120), _kernels(voila)
        status, _ = _get(srv.app_url)
        assert status == 200
        stop.set()
        watcher.join(5)
        assert seen and max(seen) <= cap, max(seen)
        assert max(seen) >= 1, "the watcher never saw a kernel"
    except BaseException:
        print("app log:\n" + srv.log.read_text()[-4000:])
        raise
    finally:
        stop.set()
        srv.stop()
    assert srv.proc.returncode == 0, srv.log.read_text()[-2000:]


def test_port_in_time_wait_is_free_for_a_restart():
    """A stopped app leaves its port in TIME_WAIT; the pre-start check must not call it busy."""
    from explainkit.views.app import check_port

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as Voila's tornado listener does
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn, _ = listener.accept()
    conn.close()                     # the server side closes first: its end goes to TIME_WAIT
    client.close()
    listener.close()
    check_port("127.0.0.1", port)    # raised "Address already in use" without SO_REUSEADDR
    busy = socket.socket()           # a port that is really listening is still refused
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        from explainkit.errors import ExplainKitError
        with pytest.raises(ExplainKitError, match="Cannot listen"):
            check_port("127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()


def test_kernel_limits_are_checked_before_start():
    from explainkit.errors import ParameterError
    from explainkit.views.app import AppConfig, check_limits, voila_command

    for bad in (0, -1, True, "4"):
        with pytest.raises(ParameterError, match="--max-kernels"):
            check_limits(bad, 600)
    with pytest.raises(ParameterError, match="--cull-idle-timeout"):
        check_limits(4, -5)
    cfg = AppConfig(model="m", data="d", ip="127.0.0.1", port=8866, token="t" * 32, loopback=True,
                    max_kernels=3, cull_idle_timeout=0)
    cmd = voila_command(Path("x.ipynb"), cfg)
    assert "--CappedKernelManager.max_kernels=3" in cmd
    assert not [a for a in cmd if "cull" in a]                   # 0: never cull


@pytest.mark.browser
def test_a_model_that_fails_to_load_is_one_error_panel(tmp_path, page):
    ckpt = tmp_path / "broken-model"
    shutil.copytree(ROOT / "sample_models" / "mnist-cnn", ckpt)
    cfg = ckpt / "config.json"
    cfg.write_text(cfg.read_text()[: len(cfg.read_text()) // 2])      # truncated: not valid JSON
    with app_running(tmp_path, "--model", str(ckpt)) as srv:
        page.goto(srv.app_url, wait_until="commit", timeout=120_000)
        panel = page.locator(".widget-html.ek-error")
        expect(panel).to_be_visible(timeout=120_000)
        expect(panel).to_contain_text("explainkit could not start")
        expect(panel).to_contain_text("config.json")
        expect(panel).to_contain_text("Fix:")
        assert page.locator(".widget-html.ek-error").count() == 1 and page.locator(".ek-dashboard").count() == 0
        text = page.inner_text("body")
        assert "There was an error when executing cell" not in text and "Traceback" not in text, text[-2000:]
    assert srv.proc.returncode == 0, srv.log.read_text()[-2000:]
