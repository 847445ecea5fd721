"""One log format for every service: timestamp, service, level, message."""

from __future__ import annotations

import logging
import os

# Read by every service (scripts/gen_config_docs.py documents it once, in docs/configuration.md).
SETTINGS_HELP: dict[str, str | tuple[str, ...]] = {"LOG_LEVEL": "Python log level (`DEBUG`, `INFO`, `WARNING`, ...)."}


def setup_logging(service: str) -> logging.Logger:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    return logging.getLogger(service)
