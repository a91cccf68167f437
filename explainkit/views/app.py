"""``explainkit app``: serve the dashboard notebook as a standalone Voila app, on loopback by default.

The notebook ships inside the package (``explainkit/static/app.ipynb``, generated from the same source as
``notebooks/dashboard.ipynb`` by ``scripts/make_notebooks.py``). It is copied to a private temp dir for
each run, so the app works from an editable install, a wheel, or a read-only site-packages. The model and
data choices reach the kernel through the environment (``EXPLAINKIT_APP_MODEL``, ``EXPLAINKIT_APP_DATA``).
"""
from __future__ import annotations

import ipaddress
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

__all__ = ["APP_NOTEBOOK", "ENV_MODEL", "ENV_DATA", "AppConfig", "check_bind",
           "voila_command", "serve"]

APP_NOTEBOOK = Path(__file__).with_name("static") / "app.ipynb"
ENV_MODEL = "EXPLAINKIT_APP_MODEL"
ENV_DATA = "EXPLAINKIT_APP_DATA"
READY_PATH = "/voila/static/extension.js"   # a static file: probing "/" would start a kernel
_READY_TIMEOUT_S = 120
TEMPLATE = "explainkit"
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
        try:
            s.bind((host, port))
        except OSError as e:
            raise ExplainKitError(f"Cannot listen on {ip}:{port}: {e.strerror or e}.",
                                  "pass another --port, or stop the program that uses this one.") from None


def voila_command(notebook: Path, config: AppConfig) -> list[str]:
    """The Voila command line. Everything security-relevant is explicit, so no user config can loosen it."""
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser",
            f"--Voila.ip={config.ip}", f"--port={config.port}", "--Voila.port_retries=0",
            f"--token={config.token}",
            "--VoilaConfiguration.strip_sources=True",      # Voila's default: no code in the page
            "--VoilaConfiguration.show_tracebacks=False",   # Voila's default: no tracebacks to the browser
            f"--template={TEMPLATE}", "--theme=light"]


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
          open_browser: bool = True, allow_remote: bool = False) -> int:
    """Run the dashboard app until interrupted; returns the exit code.

    ``model`` and ``data`` are the command line's specs, checked and made absolute by the CLI
    (``explainkit.cli.specs.check_specs``); they reach the app's kernel through its environment.
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
    config = AppConfig(model=model, data=data, ip=ip, port=port, token=secrets.token_urlsafe(24),
                       loopback=loopback)
    if not loopback:
        bar = "!" * 78
        print(f"{bar}\nWARNING: explainkit app is listening on {ip}, NOT loopback only.\n"
              "Anyone who can reach this address AND has the token in the URL can run code as you\n"
              "through the Jupyter kernel. Use it only on a trusted network; prefer an SSH tunnel.\n"
              f"{bar}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    env[ENV_MODEL], env[ENV_DATA] = config.model, config.data
    with tempfile.TemporaryDirectory(prefix="explainkit-app-") as tmp:
        notebook = Path(tmp) / "explainkit.ipynb"
        shutil.copyfile(APP_NOTEBOOK, notebook)
        write_template(Path(tmp) / "jupyter")
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
            print(f"explainkit app: model {config.model}, data {config.data}", flush=True)
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
