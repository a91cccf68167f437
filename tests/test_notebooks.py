"""Every shipped notebook runs top to bottom, headless (nbclient, kernel python3), on the embedded defaults."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from _zoo_helpers import share_lm_weights
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
# every shipped notebook but the app's: one per user path (scripts/make_notebooks.py writes them all)
USER_PATHS = sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT_S = 180      # per cell; the slowest cell (Kernel SHAP on a row) takes a few seconds


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """Hermetic Jupyter/IPython/matplotlib dirs for the kernel (it inherits os.environ)."""
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl"),
                     ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_CONFIG_HOME", "xdg-config")):
        (tmp_path / "jupyter" / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(tmp_path / "jupyter" / sub))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)      # the kernel uses its inline backend, as for a user
    for var in ("EXPLAINKIT_APP_MODEL", "EXPLAINKIT_APP_DATA"):
        monkeypatch.delenv(var, raising=False)
    share_lm_weights(tmp_path / "jupyter" / "xdg-cache")     # notebook 06 loads SmolLM2 in seconds
    work = tmp_path / "work"          # notebooks run in a scratch dir: whatever they write lands there
    work.mkdir()
    return work


def execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def problems(nb) -> list[str]:
    """Error outputs, and tracebacks written to stderr, with the cell that produced them."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {i}: {out.ename}: {out.evalue}\n--- source:\n{cell.source}")
            elif out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text:
                found.append(f"cell {i}: traceback on stderr:\n{out.text[-2000:]}")
    return found


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def widget_views(nb) -> list[dict]:
    return [o["data"][WIDGET_VIEW] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]


@pytest.mark.parametrize("name", USER_PATHS)
def test_user_path_notebook_runs_top_to_bottom(name, kernel_env):
    nb = execute(name, kernel_env)
    assert problems(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a cell did not run"
    assert "ALL CELLS DONE" in text_of(code[-1])


def test_dashboard_notebook_builds_the_default_dashboard(kernel_env):
    nb = execute("dashboard", kernel_env)
    assert problems(nb) == []
    assert len(widget_views(nb)) == 1, "the app notebook displays exactly one widget: the dashboard"
    saved = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    classes = {cls for m in saved.values() for cls in m["state"].get("_dom_classes", [])}
    assert "ek-dashboard" in classes, classes
    errors = [m["state"].get("value") for m in saved.values() if "ek-error" in m["state"].get("_dom_classes", [])]
    assert errors == [""], errors         # only the dashboard's own error panel, empty


def test_dashboard_notebook_reads_the_model_from_the_environment(kernel_env, monkeypatch):
    """`explainkit app --model X` reaches the kernel as EXPLAINKIT_APP_MODEL; a bad one is one clear message."""
    monkeypatch.setenv("EXPLAINKIT_APP_MODEL", "sample:no-such-model")
    nb = execute("dashboard", kernel_env)
    assert problems(nb) == []
    saved = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    errors = [m["state"]["value"] for m in saved.values() if "ek-error" in m["state"].get("_dom_classes", [])]
    assert "ek-dashboard" not in {c for m in saved.values() for c in m["state"].get("_dom_classes", [])}
    assert len(errors) == 1 and "no-such-model" in errors[0] and "Fix:" in errors[0], errors


def test_notebooks_are_generated_and_stored_without_outputs():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "run: python scripts/make_notebooks.py"
    written = sorted(Path(k).stem for k in mod.NOTEBOOKS if k.startswith("notebooks/"))
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == written, "a notebook not written by the script"
    for path in NB_DIR.glob("*.ipynb"):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path
        for cell in nb["cells"]:
            assert not cell.get("outputs") and not cell.get("execution_count"), f"{path} stores outputs"
    # the app serves the copy shipped inside the package (it works from a wheel, too)
    from explainkit.views.app import APP_NOTEBOOK
    assert APP_NOTEBOOK.read_text() == (NB_DIR / "dashboard.ipynb").read_text()


def test_app_notebook_ships_in_the_wheel(tmp_path):
    """Build a wheel (from a copy, so the checkout gets no build/ dir) and find the app notebook in it."""
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "explainkit", src / "explainkit", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("explainkit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("explainkit/views/static/app.ipynb").decode()
    assert shipped == (NB_DIR / "dashboard.ipynb").read_text()
