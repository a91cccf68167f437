"""``explainkit app``: serve the dashboard notebook as a standalone Voila app, on loopback by default.

The notebook ships inside the package (``explainkit/static/app.ipynb``, generated from the same source as
``notebooks/dashboard.ipynb`` by ``scripts/make_notebooks.py``). It is copied to a private temp dir for
each run, so the app works from an editable install, a wheel, or a read-only site-packages. The model and
data choices reach the kernel through the environment (``EXPLAINKIT_APP_MODEL``, ``EXPLAINKIT_APP_DATA``, and
``EXPLAINKIT_APP_COMPARE`` for a second model shown side by side).

The token never appears on a command line (``/proc/<pid>/cmdline`` is readable by every local user): it is
written to ``voila.json`` (mode 0600) in that private temp dir, which is Voila's working directory and so its
highest-priority config file. Kernels are capped (``max_kernels``, one per open page) by
``CappedKernelManager`` and idle ones are culled by jupyter_server's ``MappingKernelManager`` culler.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from explainkit.errors import DataError, ExplainKitError, MissingDependencyError, ParameterError

__all__ = ["APP_NOTEBOOK", "ENV_MODEL", "ENV_DATA", "ENV_COMPARE", "AppConfig", "KernelLimitError", "check_bind",
           "check_port", "voila_command", "write_server_config", "serve", "DEFAULT_MAX_KERNELS",
           "DEFAULT_CULL_IDLE_TIMEOUT"]

APP_NOTEBOOK = Path(__file__).with_name("static") / "app.ipynb"
ENV_MODEL = "EXPLAINKIT_APP_MODEL"
ENV_DATA = "EXPLAINKIT_APP_DATA"
ENV_COMPARE = "EXPLAINKIT_APP_COMPARE"      # a second model: the two side by side ("" = one model)
READY_PATH = "/voila/static/extension.js"   # a static file: probing "/" would start a kernel
_READY_TIMEOUT_S = 120
TEMPLATE = "explainkit"
DEFAULT_MAX_KERNELS = 4            # one kernel (~300 MB) per open page
DEFAULT_CULL_IDLE_TIMEOUT = 600    # seconds a kernel with no open page may sit idle before it is shut down
SERVER_CONFIG = "voila.json"       # in Voila's cwd (the private temp dir): its highest-priority config file
KERNEL_MANAGER = "explainkit.views.app.CappedKernelManager"   # built lazily by the module __getattr__
# Voila's "lab" template, minus its two Font Awesome links to cdn.jsdelivr.net: the same CSS is already
# bundled in Voila's own static files, and the app must make no request beyond the local server.
_FA = ('<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/{}" '
       'type="text/css" />')
_TEMPLATE_FILES = {
    "conf.json": '{"base_template": "lab"}\n',
    "index.html.j2": ("{%- extends 'lab/index.html.j2' -%}\n{%- block notebook_css -%}\n"
                      "{{ super() | replace('" + _FA.format("all.min.css") + "', '') | replace('"
                      + _FA.format("v4-shims.min.css") + "', '') }}\n{%- endblock notebook_css -%}\n"),
}


@dataclass(frozen=True)
class AppConfig:
    """Everything one app run needs; built and checked before any server starts."""

    model: str
    data: str
    ip: str
    port: int
    token: str
    loopback: bool
    max_kernels: int = DEFAULT_MAX_KERNELS
    cull_idle_timeout: int = DEFAULT_CULL_IDLE_TIMEOUT
    compare: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        if self.ip in ("0.0.0.0", "::"):
            host = "127.0.0.1"          # the wildcard is not a browsable address; loopback still works
        return f"http://{host}:{self.port}/?token={self.token}"


def check_bind(ip: str, allow_remote: bool = False) -> bool:
    """Validate the bind address; True if it is loopback. A non-loopback address needs allow_remote."""
    if ip == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ParameterError(f"--ip {ip!r} is not an IP address.",
                             "pass an address such as 127.0.0.1 (the default, loopback only).") from None
    if addr.is_loopback:
        return True
    if not allow_remote:
        raise ParameterError(f"Refusing to bind the app to the non-loopback address {ip}.",
                             "leave --ip at its default 127.0.0.1, or pass --ip explicitly on the command line "
                             "if you really mean to expose the app to other machines.")
    return False


def check_port(ip: str, port: int) -> None:
    """Fail early, with a fix, on an invalid or busy port (Voila would only log it)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ParameterError(f"--port {port!r} is not a TCP port.", "pass a number between 1 and 65535.")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    host = "127.0.0.1" if ip == "localhost" else ip
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as Voila's own (tornado) listener does: a port left in TIME_WAIT by the previous run is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ExplainKitError(f"Cannot listen on {ip}:{port}: {e.strerror or e}.",
                                  "pass another --port, or stop the program that uses this one.") from None


def check_limits(max_kernels, cull_idle_timeout) -> None:
    """Fail early, with a fix, on a kernel cap or idle timeout that is not a sensible integer."""
    if isinstance(max_kernels, bool) or not isinstance(max_kernels, int) or not 1 <= max_kernels <= 1000:
        raise ParameterError(f"--max-kernels {max_kernels!r} is not a number of kernels.",
                             f"pass a whole number from 1 to 1000 (default {DEFAULT_MAX_KERNELS}).")
    if isinstance(cull_idle_timeout, bool) or not isinstance(cull_idle_timeout, int) or cull_idle_timeout < 0:
        raise ParameterError(f"--cull-idle-timeout {cull_idle_timeout!r} is not a number of seconds.",
                             f"pass a whole number of seconds (default {DEFAULT_CULL_IDLE_TIMEOUT}; 0 never "
                             "culls).")


def voila_command(notebook: Path, config: AppConfig) -> list[str]:
    """The Voila command line. Everything security-relevant is explicit, so no user config can loosen it.

    The token is NOT on it: every local user can read a process's command line. It goes to
    ``write_server_config`` instead.
    """
    cmd = [sys.executable, "-m", "voila", str(notebook), "--no-browser",
           f"--Voila.ip={config.ip}", f"--port={config.port}", "--Voila.port_retries=0",
           "--VoilaConfiguration.strip_sources=True",      # Voila's default: no code in the page
           "--VoilaConfiguration.show_tracebacks=False",   # Voila's default: no tracebacks to the browser
           f"--VoilaConfiguration.multi_kernel_manager_class={KERNEL_MANAGER}",
           f"--CappedKernelManager.max_kernels={config.max_kernels}",
           f"--template={TEMPLATE}", "--theme=light"]
    if config.cull_idle_timeout > 0:
        cmd += [f"--MappingKernelManager.cull_idle_timeout={config.cull_idle_timeout}",
                f"--MappingKernelManager.cull_interval={max(1, min(60, config.cull_idle_timeout))}",
                "--MappingKernelManager.cull_connected=False"]   # a page that is open keeps its kernel
    return cmd


def write_server_config(folder: Path, config: AppConfig) -> Path:
    """Write ``voila.json`` with the token, readable by the owner only (0600), into Voila's cwd."""
    path = Path(folder) / SERVER_CONFIG
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"Voila": {"token": config.token}}, f)
    return path


class KernelLimitError(ExplainKitError):
    """Every kernel the app may run is in use: the page is refused instead of starting one more."""


_CAPPED = None


def _capped_kernel_manager():
    """The kernel manager Voila is told to use, built on first use (jupyter_server is imported only here)."""
    global _CAPPED
    if _CAPPED is not None:
        return _CAPPED
    import asyncio

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from tornado.web import HTTPError
    from traitlets import Integer

    class CappedKernelManager(AsyncMappingKernelManager):
        """Refuses to start a kernel while ``max_kernels`` are running or starting (each page load starts one)."""

        max_kernels = Integer(DEFAULT_MAX_KERNELS, config=True,
                              help="The most kernels that may run at once; a page beyond it gets HTTP 503.")

        async def start_kernel(self, *args, **kwargs):
            if kwargs.get("kernel_id") in self:          # an existing kernel: nothing new starts
                return await super().start_kernel(*args, **kwargs)
            if getattr(self, "_ek_lock", None) is None:
                self._ek_lock = asyncio.Lock()
            async with self._ek_lock:                    # starts one at a time, so the count cannot race
                live = set(self._kernels) | set(self._pending_kernels)
                if len(live) >= self.max_kernels:
                    err = KernelLimitError(
                        f"All {self.max_kernels} kernels of this explainkit app are in use (one per open page).",
                        "close another tab of the app and reload this page (idle kernels are also shut down "
                        "after --cull-idle-timeout seconds), or restart it with a larger --max-kernels.")
                    self.log.warning("explainkit app: %s", err)
                    raise HTTPError(503, str(err).replace("%", "%%"), reason=str(err)) from err  # shown in the page
                return await super().start_kernel(*args, **kwargs)

    _CAPPED = CappedKernelManager
    return _CAPPED


def __getattr__(name):
    if name == "CappedKernelManager":        # Voila imports it by name; only then is jupyter_server needed
        return _capped_kernel_manager()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_template(jupyter_path: Path) -> Path:
    """Write the app's Voila template under ``<jupyter_path>/voila/templates/``; returns its dir."""
    folder = jupyter_path / "voila" / "templates" / TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _TEMPLATE_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExplainKitError(f"The Voila server exited (code {proc.returncode}) before it was ready.",
                                  "read the Voila log above; check that 'voila' runs in this environment.")
        try:
            with urllib.request.urlopen(base + READY_PATH, timeout=2):
                return
        except urllib.error.HTTPError:
            return                              # any HTTP answer means it is listening
        except OSError:
            time.sleep(0.1)
    raise ExplainKitError(f"The Voila server did not answer within {timeout:.0f} s.",
                          "check the log above; the machine may be overloaded.")


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGINT (Voila shuts its kernels down), then terminate, then kill: this child only, by PID."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            proc.send_signal(sig)
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def serve(model: str = "sample:mnist-cnn", data: str = "sample", *, ip: str = "127.0.0.1", port: int = 8866,
          open_browser: bool = True, allow_remote: bool = False, max_kernels: int = DEFAULT_MAX_KERNELS,
          cull_idle_timeout: int = DEFAULT_CULL_IDLE_TIMEOUT, compare: str | None = None) -> int:
    """Run the dashboard app until interrupted; returns the exit code.

    At most ``max_kernels`` kernels run at once (each page load starts one; a page beyond the cap gets
    HTTP 503 with the fix); a kernel with no open page is shut down after ``cull_idle_timeout`` idle
    seconds (0: never).

    ``model``, ``data`` and ``compare`` (a second model, shown side by side) are the command line's specs,
    checked and made absolute by the CLI (``explainkit.cli.specs.check_specs``); they reach the app's kernel
    through its environment.
    """
    try:
        import voila  # noqa: F401
    except ImportError:
        raise MissingDependencyError("The app needs Voila, which is not installed.",
                                     "pip install 'explainkit[app]'.") from None
    if not APP_NOTEBOOK.is_file():
        raise DataError(f"The app notebook {APP_NOTEBOOK} is missing from the installation.",
                        "reinstall explainkit.")
    loopback = check_bind(ip, allow_remote)
    check_port(ip, port)
    check_limits(max_kernels, cull_idle_timeout)
    config = AppConfig(model=model, data=data, ip=ip, port=port, token=secrets.token_urlsafe(24),
                       loopback=loopback, max_kernels=max_kernels, cull_idle_timeout=cull_idle_timeout,
                       compare=compare or "")
    if not loopback:
        bar = "!" * 78
        print(f"{bar}\nWARNING: explainkit app is listening on {ip}, NOT loopback only.\n"
              "Anyone who can reach this address AND has the token in the URL can run code as you\n"
              "through the Jupyter kernel. Use it only on a trusted network; prefer an SSH tunnel.\n"
              f"{bar}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    env[ENV_MODEL], env[ENV_DATA], env[ENV_COMPARE] = config.model, config.data, config.compare
    with tempfile.TemporaryDirectory(prefix="explainkit-app-") as tmp:
        notebook = Path(tmp) / "explainkit.ipynb"
        shutil.copyfile(APP_NOTEBOOK, notebook)
        write_template(Path(tmp) / "jupyter")
        write_server_config(Path(tmp), config)           # the token: a 0600 file, never argv
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(Path(tmp) / "jupyter"), env.get("JUPYTER_PATH")) if p)
        # Ctrl-C, kill and a closed terminal all stop the server cleanly, even where the shell started us
        # with SIGINT ignored (a background job): an ignored signal would be inherited by Voila too.
        previous = {sig: signal.signal(sig, _raise_interrupt)
                    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        proc = subprocess.Popen(voila_command(notebook, config), env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                start_new_session=True)   # its own session: only we signal it, by PID
        try:
            _wait_ready(f"http://127.0.0.1:{port}" if config.ip in ("0.0.0.0", "localhost")
                        else config.url.split("/?")[0], proc, _READY_TIMEOUT_S)
            print(f"explainkit app: model {config.model}" + (f" vs {config.compare}" if config.compare else "")
                  + f", data {config.data}", flush=True)
            print(f"explainkit app running at {config.url}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            if open_browser:
                threading.Thread(target=_open_browser, args=(config.url,), daemon=True).start()
            return proc.wait()
        except KeyboardInterrupt:
            print("explainkit app: stopping", file=sys.stderr, flush=True)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _stop(proc)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _open_browser(url: str) -> None:
    import webbrowser
    try:
        if not webbrowser.open(url, new=1):
            print(f"explainkit app: no browser found; open {url} yourself.", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - a missing browser must not stop the server
        print(f"explainkit app: could not open a browser ({e}); open {url} yourself.", file=sys.stderr)
