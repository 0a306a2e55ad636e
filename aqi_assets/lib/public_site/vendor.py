"""The vendored Leaflet: its files checked against MANIFEST.json, and (on demand) against the npm registry.

`python -m aqi_assets.lib.public_site.vendor` checks the vendored files against the manifest (no network);
with `--from-npm` it also runs `npm pack leaflet@<version>`, verifies the tarball's sha512 integrity and
compares each vendored file with the tarball's copy.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
LEAFLET_VERSION = "1.9.4"
LEAFLET_DIR = STATIC_DIR / "vendor" / f"leaflet-{LEAFLET_VERSION}"


class VendorMismatch(RuntimeError):
    """A vendored file differs from what the manifest (or the npm tarball) says."""


def manifest(directory: Path = LEAFLET_DIR) -> dict:
    return json.loads((directory / "MANIFEST.json").read_text())


def check_vendored(directory: Path = LEAFLET_DIR) -> list[str]:
    """The vendored files whose SHA-256 match the manifest; raises VendorMismatch on any difference."""
    expected = manifest(directory)["sha256"]
    problems = []
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content differs from MANIFEST.json")
    if problems:
        raise VendorMismatch("; ".join(problems))
    return sorted(expected)


def check_against_npm_tarball(tarball: Path, directory: Path = LEAFLET_DIR) -> None:
    """The tarball's integrity equals the manifest's and each vendored file equals the tarball's copy."""
    info = manifest(directory)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if integrity != info["tarball_integrity"]:
        raise VendorMismatch(f"{tarball.name}: integrity {integrity} != {info['tarball_integrity']}")
    with tarfile.open(tarball, "r:gz") as archive:
        for name, member_path in info["source_paths"].items():
            member = archive.extractfile(member_path)
            if member is None or member.read() != (directory / name).read_bytes():
                raise VendorMismatch(f"{name} differs from {member_path} in {tarball.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from-npm", action="store_true", help="also fetch the package with `npm pack`")
    args = parser.parse_args(argv)
    files = check_vendored()
    print(f"leaflet {LEAFLET_VERSION}: {len(files)} vendored files match MANIFEST.json")
    if args.from_npm:
        with tempfile.TemporaryDirectory(prefix="leaflet-npm-") as tmp:
            subprocess.run(
                ["npm", "pack", f"leaflet@{LEAFLET_VERSION}", "--silent"], cwd=tmp, check=True, capture_output=True
            )
            check_against_npm_tarball(Path(tmp) / f"leaflet-{LEAFLET_VERSION}.tgz")
        print(f"leaflet {LEAFLET_VERSION}: npm tarball integrity verified; vendored files identical")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
