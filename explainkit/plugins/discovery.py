"""Isolated discovery of third-party declarations: a subprocess with a timeout, and a spec cache.

A declaration module is third-party code. Importing it in the host would let it ``sys.exit()``, hang,
or crash the ``explainkit`` process before a single line of output. So each distribution's declaration
modules are imported in a short-lived ``sys.executable -c ...`` subprocess (``TIMEOUT_S`` at most),
which writes the specs as JSON; the host rebuilds them with ``ExplainerSpec.from_json`` (validated
again, cheaply) and never imports plugin code until that explainer runs.

The result is cached in ``$XDG_CACHE_HOME/explainkit/plugin-specs.json`` (default ``~/.cache``), keyed
by the distribution's name and version, its entry points, and the stamps (path, size, mtime_ns) of the
files the declaration import runs (each package ``__init__.py`` on the way, and the module), so warm
discovery starts no subprocess. A timeout is never cached (it may be transient).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["read_specs", "cache_path", "TIMEOUT_S", "import_profile"]

TIMEOUT_S = 10.0
CACHE_NAME = "plugin-specs.json"
_CACHE_VERSION = 1


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "explainkit" / CACHE_NAME


# -- locating a module's files without importing anything ----------------------------------------------
def module_files(modname: str) -> list[str]:
    """The files that importing ``modname`` executes: each package's ``__init__.py``, then the module."""
    import importlib.util

    parts = modname.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])     # a top-level name: finding it imports nothing
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    files = [spec.origin] if spec.origin and os.path.isfile(spec.origin) else []
    dirs = list(spec.submodule_search_locations or [])
    for i, part in enumerate(parts[1:], start=1):
        found = None
        for d in dirs:
            pkg, mod = os.path.join(d, part, "__init__.py"), os.path.join(d, part + ".py")
            if os.path.isfile(pkg):
                found, dirs = pkg, [os.path.join(d, part)]
                break
            if os.path.isfile(mod) and i == len(parts) - 1:
                found = mod
                break
        if found is None:
            break
        files.append(found)
    return files


def _stamps(eps) -> list:
    out = []
    for ep in eps:
        mod = ep.value.partition(":")[0].strip()
        files = module_files(mod)
        if not files:
            out.append([mod, "missing"])
        for f in files:
            try:
                st = os.stat(f)
                out.append([f, st.st_size, st.st_mtime_ns])
            except OSError:
                out.append([f, "missing"])
    return out


def _key(dist: str, version: str, eps) -> str:
    from explainkit import __version__

    raw = json.dumps([_CACHE_VERSION, __version__, sys.executable, dist, version,
                      sorted([ep.name, ep.value] for ep in eps), _stamps(eps)], default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(data: dict) -> None:
    from explainkit.atomic import atomic_write

    try:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data))
    except (OSError, ValueError, TypeError):      # a read-only home only costs the speed-up
        pass


# -- the subprocess --------------------------------------------------------------------------------------
_CHILD = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
          "from explainkit.plugins._discovery_child import main; main(sys.argv[2], sys.argv[3])")


def _isolated(dist: str, version: str, eps) -> tuple[dict, bool]:
    """({name: result}, cacheable): import the declarations in a subprocess with a timeout."""
    fd, out = tempfile.mkstemp(prefix="explainkit-discovery-", suffix=".json")
    os.close(fd)
    results, rc, timed_out = {}, 0, False
    try:
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(sys.path),
                                   json.dumps([[ep.name, ep.value] for ep in eps]), out],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=TIMEOUT_S)
            rc, err = proc.returncode, proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            timed_out, err = True, []
        try:
            results = json.loads(Path(out).read_text() or "{}")
        except (OSError, ValueError):
            results = {}
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass
    for ep in eps:
        if ep.name in results:
            continue
        mod = ep.value.partition(":")[0].strip()
        if timed_out:
            why = (f"importing the declaration module {mod!r} did not finish within {TIMEOUT_S:g} s (it hangs). "
                   f"Fix: a declaration module must only define ExplainerSpec objects; do no work at import.")
        else:
            why = (f"importing the declaration module {mod!r} killed the process (exit code {rc}"
                   f"{': ' + err[0] if err else ''}). Fix: a declaration module must only define "
                   "ExplainerSpec objects; never exit or abort at import.")
        results[ep.name] = {"error": why}
    return results, not timed_out


def read_specs(dist: str, version: str, eps) -> dict:
    """{entry-point name: {"spec": json} or {"error": reason}} for one distribution, cached."""
    key = f"{dist}=={version}:{_key(dist, version, eps)}"
    cache = _read_cache()
    hit = cache.get(key)
    if isinstance(hit, dict) and all(ep.name in hit for ep in eps):
        return hit
    results, cacheable = _isolated(dist, version, eps)
    if cacheable:
        cache = {k: v for k, v in _read_cache().items() if not k.startswith(f"{dist}==")}
        cache[key] = results
        _write_cache(cache)
    return results


# -- the conformance harness's import check ---------------------------------------------------------------
HEAVY = ("torch", "captum", "shap", "lime", "tensorflow", "jax", "sklearn", "scipy", "skimage", "pandas",
         "matplotlib", "transformers", "keras", "cv2")
# explainkit's own declaration API (what every declaration imports) is loaded before the clock starts
_PROFILE = ("import sys, json, time; sys.path[:] = json.loads(sys.argv[1]); import explainkit; "
            "from explainkit import ExplainerSpec, Param, Modality; "
            "from explainkit.plugins._discovery_child import load; "
            "before = set(sys.modules); t = time.perf_counter(); load(sys.argv[2]); "
            "dt = time.perf_counter() - t; "
            "new = sorted({m.split('.')[0] for m in set(sys.modules) - before}); "
            "print(json.dumps({'seconds': dt, 'new': new}))")


def import_profile(value: str, timeout: float = TIMEOUT_S) -> dict:
    """Import an entry point's declaration in a fresh subprocess (after explainkit's declaration API):
    {"seconds", "heavy": [top-level heavy packages it pulled in], "new": [...]} or {"error": ...}."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROFILE, json.dumps(sys.path), value],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the import did not finish within {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": f"the import failed: {tail}"}
    data = json.loads(lines[-1])
    data["heavy"] = [m for m in data["new"] if m in HEAVY]
    return data
