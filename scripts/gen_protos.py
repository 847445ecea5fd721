"""Generate the Python gRPC stubs from protos/ into common/generated/.

`python scripts/gen_protos.py` writes them; `--check` regenerates into a temporary folder and
fails when the committed stubs differ, so a stale stub never lands.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "common" / "generated"
PACKAGE_INIT = '"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n'


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for folder in {out / Path(p).parent for p in protos} | {out / "infinitetalk"}:
        (folder / "__init__.py").write_text(PACKAGE_INIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / "infinitetalk", ignore_errors=True)
        OUT.mkdir(parents=True, exist_ok=True)
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = []
        for path in fresh.rglob("*"):
            if path.is_file():
                committed = OUT / path.relative_to(fresh)
                if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                    stale.append(str(committed.relative_to(ROOT)))
        for path in (OUT / "infinitetalk").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and not (fresh / path.relative_to(OUT)).exists():
                stale.append(str(path.relative_to(ROOT)))
    if stale:
        print("generated stubs are stale; run `make proto`:", *stale, sep="\n  ")
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
