"""Start/stop the servers the browser tests drive: JupyterLab, and the ``explainkit app`` (Voila).

Hermetic: every Jupyter/IPython/matplotlib/XDG dir lives under a temp dir, servers bind 127.0.0.1 on a
free port, and each server is stopped by its own PID (SIGINT, then terminate, then kill).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
ARTIFACTS = Path(os.environ.get("EK_ARTIFACTS", ROOT / "artifacts"))
CHROMIUM = os.environ.get("EK_CHROMIUM", "/usr/bin/chromium")   # Debian `apt-get install chromium`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
LOCAL_PREFIXES = ("http://127.0.0.1", "http://localhost", "data:", "blob:", "about:")

# Lab settings that keep the UI quiet and deterministic and avoid any outbound fetches.
LAB_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {
        "checkForUpdates": False, "fetchNews": "false", "doNotDisturbMode": True},
    "@jupyterlab/extensionmanager-extension:plugin": {"enabled": False},
    # every cell attached to the DOM, so widgets of off-screen cells render and can be located
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(base: Path) -> dict:
    """A copy of os.environ with every Jupyter dir isolated under ``base`` (never ~/.jupyter)."""
    cfg, data, rt = base / "config", base / "data", base / "runtime"
    for d in (cfg / "labconfig", data, rt):
        d.mkdir(parents=True, exist_ok=True)
    (cfg / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(LAB_OVERRIDES))
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_DATA_DIR=str(data), JUPYTER_RUNTIME_DIR=str(rt),
               JUPYTER_PLATFORM_DIRS="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               IPYTHONDIR=str(base / "ipython"), MPLCONFIGDIR=str(base / "mpl"),
               XDG_CONFIG_HOME=str(base / "xdg-config"), XDG_CACHE_HOME=str(base / "xdg-cache"),
               XDG_DATA_HOME=str(base / "xdg-data"))
    env.pop("MPLBACKEND", None)   # Agg (set by tests/conftest.py) would make plt.show() draw nothing in kernels
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    token: str
    log: Path
    started: float = field(default_factory=time.perf_counter)
    app_url: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}" + (f"?token={self.token}" if self.token else "")

    def stop(self, timeout: float = 20) -> None:
        """SIGINT (graceful: kernels are shut down), then terminate, then kill; this process only."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, any_status: bool = False):
    """Poll until the server answers 200 (or any HTTP status with any_status: 'listening')."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited rc={proc.returncode}\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            if any_status:
                return
            last = e
        except Exception as e:  # noqa: BLE001 - not listening yet
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last})\n{log.read_text()[-3000:]}")


def start_jupyter_lab(root: Path, workdir: Path, timeout: float = 90) -> Server:
    port, token = free_port(), secrets.token_hex(16)
    log = workdir / f"lab-{port}.log"
    cmd = [str(VENV_BIN / "jupyter"), "lab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True",        # window.jupyterapp for commands
           "--LabApp.extension_manager=readonly",        # no PyPI listing queries
           "--LanguageServerManager.autodetect=False"]
    return _launch(cmd, root, workdir, port, token, log, timeout)


def _launch(cmd, root: Path, workdir: Path, port: int, token: str, log: Path, timeout: float) -> Server:
    """Start a Jupyter server command (hermetic dirs) and wait for its API; never leak a half-started one."""
    if os.geteuid() == 0:
        cmd = [*cmd, "--allow-root"]                     # CI containers often run as root
    proc = subprocess.Popen(cmd, env=jupyter_env(workdir / "jupyter"), cwd=root, stdin=subprocess.DEVNULL,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(proc, port, token, log)
    try:
        _wait_http(srv.url("/api/status"), proc, log, timeout)
    except BaseException:
        srv.stop()
        raise
    return srv


def start_notebook7(root: Path, workdir: Path, timeout: float = 90) -> Server:
    """``jupyter notebook`` (Notebook 7) on ``root``, hermetic like Lab; ``window.jupyterapp`` exposed."""
    port, token = free_port(), secrets.token_hex(16)
    log = workdir / f"notebook7-{port}.log"
    cmd = [sys.executable, "-m", "notebook", "--no-browser",          # the `jupyter notebook` entry point
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--JupyterNotebookApp.expose_app_in_browser=True", "--LanguageServerManager.autodetect=False"]
    return _launch(cmd, root, workdir, port, token, log, timeout)


_APP_URL = re.compile(r"explainkit app running at (http://\S+)")


def start_app(workdir: Path, *args: str, timeout: float = 90) -> Server:
    """``explainkit app --no-browser --port FREE``; ready when it prints its URL (it waits for Voila)."""
    port = free_port()
    log = workdir / f"app-{port}.log"
    cmd = [str(VENV_BIN / "explainkit"), "app", "--no-browser", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=jupyter_env(workdir / "jupyter"), cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    srv = Server(proc, port, "", log)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = _APP_URL.search(log.read_text())
            if m:
                srv.app_url = m.group(1)
                srv.token = srv.app_url.split("token=", 1)[1] if "token=" in srv.app_url else ""
                return srv
            if proc.poll() is not None:
                raise RuntimeError(f"explainkit app exited rc={proc.returncode}\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"explainkit app printed no URL in {timeout}s\n{log.read_text()[-3000:]}")
    except BaseException:
        srv.stop()
        raise


@contextmanager
def app_running(workdir: Path, *args: str, timer=None):
    """``start_app`` for a with-block: on failure print the app's log, and always stop it (then mark the timer)."""
    srv = start_app(workdir, *args)
    try:
        yield srv
    except BaseException:
        print("app log (Voila and kernel stderr):\n" + srv.log.read_text()[-4000:])
        raise
    finally:
        srv.stop()
        if timer is not None:
            timer.mark("stopped")
