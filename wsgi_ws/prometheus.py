"""Prometheus metrics summed over every worker, at a short path: ``from wsgi_ws.prometheus import exposition``.

It lives in :mod:`wsgi_ws.integrations.prometheus` (read it for the metrics and how they are exported); this module
keeps the short path working. It needs ``prometheus_client`` (``pip install 'wsgi-ws[prometheus]'``).
"""

from __future__ import annotations

from .integrations.prometheus import (
    EXPORT_INTERVAL,
    MULTIPROCESS_DIR,
    child_exit,
    ensure_exporting,
    export_now,
    exposition,
    on_exit,
    on_starting,
    prepare_directory,
    server_totals,
)

__all__ = [
    "EXPORT_INTERVAL",
    "MULTIPROCESS_DIR",
    "child_exit",
    "ensure_exporting",
    "export_now",
    "exposition",
    "on_exit",
    "on_starting",
    "prepare_directory",
    "server_totals",
]
