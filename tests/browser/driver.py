"""Helpers that drive JupyterLab 4 and the dashboard's test hooks (see docs/dashboard.md)."""
from __future__ import annotations

import hashlib
import re

from playwright.sync_api import expect

_STATE_DONE = re.compile(r"state=(done|cached)")

KERNEL_READY_JS = """(name) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  // Lab restores earlier tabs: the current widget must be THIS notebook, not one opened before it
  if (!w || !w.context || !w.context.path.endsWith(name)) return false;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(w && w.sessionContext.isReady && k && k.status === 'idle' && k.connectionStatus === 'connected');
}"""

# Run code in the notebook's kernel and return its stdout: proves what the Python side holds.
KERNEL_EVAL_JS = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  let out = "";
  const future = k.requestExecute({code, silent: false, store_history: false});
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") out += msg.content.text;
    if (msg.header.msg_type === "error") out += "ERROR " + msg.content.ename + ": " + msg.content.evalue;
  };
  await future.done;
  return out;
}"""

# Time from a click to the moment the view's data-ek-key changes, measured inside the page.
CLICK_TO_KEY_JS = """async ([tileSel, viewSel]) => {
  const view = document.querySelector(viewSel);
  const before = view.dataset.ekKey;
  const done = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (view.dataset.ekKey !== before && view.dataset.ekReady === "1") {
        obs.disconnect(); resolve(performance.now());
      }
    });
    obs.observe(view, {attributes: true, attributeFilter: ["data-ek-key", "data-ek-ready"]});
  });
  const t0 = performance.now();
  document.querySelector(tileSel).click();
  const t1 = await done;
  return {ms: t1 - t0, key: view.dataset.ekKey};
}"""


def open_notebook(page, server, name: str):
    """Open a notebook in Lab and wait until its kernel is idle; returns the notebook panel locator."""
    page.goto(server.url(f"/lab/tree/{name}"))
    nb = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(nb.locator(".jp-Cell").first).to_be_visible(timeout=90_000)
    # not the toolbar circle: it reads 'idle' before the kernel exists
    expect(page.locator(".jp-StatusBar-Item", has_text="Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    page.wait_for_function(KERNEL_READY_JS, arg=name, timeout=90_000)
    return nb


STATUS = ".ek-status .widget-html-content"      # the dashboard's status line (what wait_done reads)


def run_dashboard_notebook(page, server, name: str, timer):
    """Open a notebook in Lab, run every cell, and return its dashboard and that dashboard's status line."""
    nb = open_notebook(page, server, name)
    timer.mark("kernel_idle")
    run_all(page, nb)
    timer.mark("notebook_ran")
    dash = nb.locator(".ek-dashboard")
    return dash, dash.locator(STATUS)


# the first code cell has been queued or run (its prompt shows [*] or a number)
STARTED_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return !!w && w.content.widgets.some((c) => c.model.type === 'code' &&
      (c.model.executionCount !== null || c.node.querySelector('.jp-InputPrompt')?.textContent.includes('*')));
}"""


def run_all(page, nb, timeout_ms: int = 180_000):
    for attempt in range(3):      # under load the command can land before the panel is wired; retry
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.wait_for_function(STARTED_JS, timeout=20_000)
            break
        except Exception:  # noqa: BLE001 - playwright TimeoutError: nothing started yet
            if attempt == 2:
                raise
    expect(nb.locator(".jp-OutputArea-output", has_text="ALL CELLS DONE")).to_be_visible(timeout=timeout_ms)
    errors = nb.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()


def kernel_eval(page, code: str) -> str:
    return page.evaluate(KERNEL_EVAL_JS, code)


def canvas_digest(locator) -> str:
    """A hash of a canvas's pixels (PNG data URL)."""
    data = locator.evaluate("c => c.toDataURL('image/png')")
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def wait_done(status, *texts: str, **fields):
    """Wait until ek-status echoes every field (sample=3, method=...) and text, and the work finished."""
    for text in [f"{k}={v}" for k, v in fields.items()] + list(texts):
        expect(status).to_contain_text(text, timeout=60_000)
    expect(status).to_contain_text(_STATE_DONE, timeout=60_000)



def open_dashboard(page, srv, notebook: str | None = None, timer=None, timeout_ms: int = 120_000):
    """The dashboard of ``srv``: the app's page (``srv.app_url`` set), or in Lab the ``notebook`` run to its end;
    returns (dashboard, status line) once its first explanation is on screen."""
    if srv.app_url:
        page.goto(srv.app_url, wait_until="commit", timeout=timeout_ms)
        dash = page.locator(".ek-dashboard")
        expect(dash.locator(".ek-header")).to_be_visible(timeout=timeout_ms)
        status = dash.locator(STATUS)
    else:
        dash, status = run_dashboard_notebook(page, srv, notebook, timer)
    expect(dash.locator(".ek-view[data-ek-ready='1']")).to_be_visible(timeout=timeout_ms)
    expect(status).to_contain_text(_STATE_DONE, timeout=timeout_ms)
    if timer is not None:
        timer.mark("dashboard_ready")
    return dash, status


def write_notebook(path, cells) -> None:
    """A Python 3 notebook of ``cells`` (code sources) at ``path``: for tests that build their own notebook."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(path))
