"""`explainkit app`: the dashboard served by Voila on loopback, driven in chromium; plus its safety checks."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from driver import STATUS, canvas_digest, wait_done
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect


@pytest.mark.browser
def test_app_serves_the_dashboard(tmp_path, page, timer):
    with app_running(tmp_path, timer=timer) as srv:
        timer.mark("server_ready")
        assert srv.app_url.startswith(f"http://127.0.0.1:{srv.port}/?token=") and len(srv.token) >= 24
        # without the token nothing is served (and no kernel starts): a redirect to the login page
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.build_opener(_NoRedirect).open(srv.base + "/", timeout=10)
        assert err.value.code in (302, 401, 403)

        # this request starts the kernel and runs the notebook while the page streams in
        page.goto(srv.app_url, wait_until="commit", timeout=120_000)
        dash = page.locator(".ek-dashboard")
        expect(dash).to_be_visible(timeout=120_000)
        expect(dash.locator(".ek-header")).to_contain_text("mnist-cnn")     # EXPLAINKIT_APP_MODEL default
        status = dash.locator(STATUS)
        view = dash.locator(".ek-view[data-ek-ready='1']")
        canvas = view.locator("canvas").first
        wait_done(status, sample=0, method="integrated_gradients")
        keys, pixels = [view.get_attribute("data-ek-key")], [canvas_digest(canvas)]
        timer.mark("dashboard_ready")

        def changed(prefix):
            expect(view).not_to_have_attribute("data-ek-key", keys[-1])
            keys.append(view.get_attribute("data-ek-key"))
            assert keys[-1].startswith(prefix), keys
            pixels.append(canvas_digest(canvas))
            assert pixels[-1] != pixels[-2], f"the heat map did not change for {keys[-1]}"

        dash.locator(".ek-grid .ek-sample[data-ek-index='5']").click()
        wait_done(status, sample=5, method="integrated_gradients")
        changed("5|integrated_gradients|")
        box = dash.locator(".ek-param-n_steps input")
        box.fill("4")
        box.press("Enter")
        wait_done(status, "n_steps=4", sample=5)
        changed("5|integrated_gradients|")
        dash.locator(".ek-method select").select_option(label="Saliency")
        wait_done(status, "params=abs=True", sample=5, method="saliency")
        changed("5|saliency|")
        timer.mark("interactions_done")

        html = page.content()                 # strip_sources: the notebook's code never reaches the browser
        assert "resolve_model" not in html and "EXPLAINKIT_APP_MODEL" not in html
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-dashboard.png"), full_page=True)
        assert page.ek_blocked == [], page.ek_blocked        # Voila's CDN font links are removed by the app
        assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
    assert srv.proc.returncode == 0, srv.log.read_text()[-2000:]
    assert "explainkit app: stopping" in srv.log.read_text()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# -- no browser: the app's guard rails ----------------------------------------------------------------------
def test_bind_address_is_loopback_unless_explicit():
    from explainkit.errors import ParameterError
    from explainkit.views.app import check_bind

    assert check_bind("127.0.0.1") and check_bind("::1") and check_bind("localhost")
    with pytest.raises(ParameterError, match="non-loopback"):
        check_bind("0.0.0.0")
    assert check_bind("0.0.0.0", allow_remote=True) is False
    with pytest.raises(ParameterError, match="not an IP address"):
        check_bind("example.com", allow_remote=True)


def test_voila_command_pins_the_safe_settings(tmp_path):
    from explainkit.views.app import AppConfig, voila_command, write_template

    cfg = AppConfig(model="sample:mnist-cnn", data="sample", ip="127.0.0.1", port=8866, token="t" * 32,
                    loopback=True)
    cmd = voila_command(tmp_path / "x.ipynb", cfg)
    assert "--VoilaConfiguration.strip_sources=True" in cmd
    assert "--VoilaConfiguration.show_tracebacks=False" in cmd
    assert "--Voila.ip=127.0.0.1" in cmd
    assert not [a for a in cmd if "t" * 32 in a or a.startswith("--token")], cmd   # argv is world-readable
    assert "--VoilaConfiguration.multi_kernel_manager_class=explainkit.views.app.CappedKernelManager" in cmd
    assert f"--CappedKernelManager.max_kernels={cfg.max_kernels}" in cmd
    assert not [a for a in cmd if "tornado_settings" in a or "terminal" in a.lower() or "debug" in a]
    template = (write_template(tmp_path) / "index.html.j2").read_text()
    assert "extends 'lab/index.html.j2'" in template and template.count("cdn.jsdelivr.net") == 2


def test_cli_errors_are_one_clear_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cases = [(["--model", "sample:no-such-model"], "Unknown sample model"),
                 (["--data", str(tmp_path / "missing.csv")], "No data at"),
                 (["--ip", "not-an-ip"], "not an IP address"),
                 (["--port", str(port)], f"Cannot listen on 127.0.0.1:{port}")]
        for args, message in cases:
            out = subprocess.run([sys.executable, "-m", "explainkit.cli", "app", "--no-browser", *args],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 2, (args, out.stderr)
            assert message in out.stderr and "Fix:" in out.stderr and "Traceback" not in out.stderr, out.stderr
    finally:
        busy.close()
