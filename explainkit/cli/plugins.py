"""``explainkit plugins list | check NAME | new NAME --dir DIR``."""
from __future__ import annotations

from pathlib import Path

from explainkit.errors import UnknownNameError
from explainkit.plugins.registry import listing, registry

__all__ = ["cli_plugins", "cli_check", "cli_new"]


def cli_plugins(args) -> int:
    if args.action == "list":
        rows = [("name", "modalities", "requires", "distribution", "version", "status")]
        for e in registry().all():
            s = e.spec                   # the name column shows the aliases too: 'name (alias: a, b)'
            rows.append((listing([s])[0] if s else e.name, ",".join(sorted(m.value for m in s.modalities)) if s
                         else "?", ",".join(sorted(c.value for c in s.requires)) if s else "?",
                         e.distribution, e.version, "ok" if e.ok else f"BROKEN: {e.reason}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
        return 0
    if args.action == "check":
        return cli_check(args)
    if args.action == "new":
        return cli_new(args)
    raise UnknownNameError(f"Unknown plugins action {args.action!r}.", "use list, check or new.")


def cli_check(args) -> int:
    """``explainkit plugins check NAME [--quick]``: print the table; exit 1 on any failure."""
    from explainkit.plugins.conformance import check_explainer

    report = check_explainer(args.name, quick=bool(getattr(args, "quick", False)))
    print(report)
    return 0 if report.ok else 1


def cli_new(args) -> int:
    """``explainkit plugins new NAME --dir DIR``: write the files and print the next steps."""
    from explainkit.plugins.scaffold import names_for, scaffold

    files = scaffold(args.name, args.dir)
    values = names_for(args.name)
    print(f"created {values['dist']} in {args.dir}:")
    for f in files:
        print(f"  {f}")
    print("next:\n"
          f"  pip install --no-deps --no-build-isolation -e {args.dir}\n"
          f"  explainkit plugins list\n"
          f"  explainkit plugins check {args.name} --quick\n"
          f"  python -m pytest {Path(args.dir) / 'tests'}")
    return 0
