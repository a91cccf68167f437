"""``explainkit app``: the dashboard as a standalone Voila app on 127.0.0.1."""
from __future__ import annotations

from explainkit.cli.specs import check_specs

__all__ = ["cli_app"]


def cli_app(args) -> int:
    """``explainkit app``: a non-default --ip can only come from the command line, so it counts as explicit."""
    from explainkit.views.app import serve

    model, data = check_specs(args.model, args.data)
    return serve(model, data, ip=args.ip, port=args.port, open_browser=not args.no_browser,
                 allow_remote=True, max_kernels=args.max_kernels, cull_idle_timeout=args.cull_idle_timeout)
