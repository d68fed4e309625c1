#!/usr/bin/env python3
"""Regenerate the protobuf/gRPC stubs under proto/ from the .proto sources.

Usage: python scripts/gen_proto.py [--check]

With --check, regenerate into a temporary folder and exit 1 (printing a diff
summary) when the committed stubs differ, so CI catches stale stubs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
SOURCES = sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(s) for s in SOURCES],
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)


def generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed stubs are stale"
    )
    args = parser.parse_args()
    if not args.check:
        generate(PROTO_ROOT)
        print(f"regenerated stubs for {len(SOURCES)} proto file(s) under {PROTO_ROOT}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh, committed = generated_files(out), generated_files(PROTO_ROOT)
        stale = sorted(
            str(p)
            for p in fresh | committed
            if p not in fresh
            or p not in committed
            or not filecmp.cmp(out / p, PROTO_ROOT / p, shallow=False)
        )
        if stale:
            print("proto stubs are stale; run `python scripts/gen_proto.py`:", file=sys.stderr)
            for name in stale:
                print(f"  proto/{name}", file=sys.stderr)
            return 1
        print(f"proto stubs up to date ({len(fresh)} files)")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
