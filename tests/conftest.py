"""Make the repository root importable so tests can use tests.helpers and scripts.stack."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402

from tests.helpers.postgres import PostgresServer, find_bindir  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the whole run (each test makes its own database)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found: run `make install-postgres` (the Debian postgresql package)")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.remove()
