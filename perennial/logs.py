"""Logging of every Perennial process: one format, and no per-request lines from httpx."""

from __future__ import annotations

import logging


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every engine call at INFO; that belongs in metrics, not the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
