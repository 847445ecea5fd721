"""One log format for every service: timestamp, service, level, message."""

from __future__ import annotations

import logging
import os


def setup_logging(service: str) -> logging.Logger:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    return logging.getLogger(service)
