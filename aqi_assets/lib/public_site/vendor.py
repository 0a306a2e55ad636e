"""Vendored npm packages: their files checked against each package's MANIFEST.json, and (on demand) against the
npm registry.

A vendored package is a directory `<name>-<version>/` holding copies of files of the package's npm tarball and a
MANIFEST.json naming, for each file, its SHA-256 and its path in the tarball (`package/...`, or
`<other>@<version>:package/...` for a file of another tarball, e.g. the licence of a library bundled into a
`dist` file), and the tarballs' sha512 integrity. The site publishes the packages under `static/vendor/`
(Leaflet, supercluster); the tests keep their own (axe-core) under `aqi_assets_tests/data/vendor/`.

`python -m aqi_assets.lib.public_site.vendor [ROOT ...]` checks every package under the roots (default: the
site's) against its manifest (no network); with `--from-npm` it also runs `npm pack` for each tarball a manifest
names, verifies its integrity and compares each vendored file with the tarball's copy.
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
SITE_VENDOR_ROOT = STATIC_DIR / "vendor"
LEAFLET_VERSION = "1.9.4"
LEAFLET_DIR = SITE_VENDOR_ROOT / f"leaflet-{LEAFLET_VERSION}"
SUPERCLUSTER_VERSION = "8.0.1"
SUPERCLUSTER_DIR = SITE_VENDOR_ROOT / f"supercluster-{SUPERCLUSTER_VERSION}"
MANIFEST = "MANIFEST.json"
# The project's own files in a package directory (not from npm, not checked against it).
PROJECT_FILES = {MANIFEST, "README.md"}


class VendorMismatch(RuntimeError):
    """A vendored file differs from what the manifest (or the npm tarball) says."""


def manifest(directory: Path = LEAFLET_DIR) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def vendored_packages(root: Path = SITE_VENDOR_ROOT) -> list[Path]:
    """Every package directory (one with a MANIFEST.json) under `root`, sorted by name."""
    return sorted(path.parent for path in Path(root).glob(f"*/{MANIFEST}"))


def package_spec(directory: Path) -> str:
    info = manifest(directory)
    return f"{info['package']}@{info['version']}"


def tarball_integrities(directory: Path) -> dict[str, str]:
    """npm spec → sha512 integrity of every tarball the manifest draws files from (its own first)."""
    info = manifest(directory)
    integrities = {package_spec(directory): info["tarball_integrity"]}
    integrities.update({spec: extra["integrity"] for spec, extra in info.get("extra_tarballs", {}).items()})
    return integrities


def check_vendored(directory: Path = LEAFLET_DIR) -> list[str]:
    """The vendored files whose SHA-256 match the manifest; raises VendorMismatch on any difference, and on a
    file in the directory the manifest does not name (nothing unchecked gets published)."""
    expected = manifest(directory)["sha256"]
    problems = []
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content differs from {MANIFEST}")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    problems += [f"{name}: not in {MANIFEST}" for name in sorted(present - set(expected) - PROJECT_FILES)]
    if problems:
        raise VendorMismatch(f"{directory.name}: " + "; ".join(problems))
    return sorted(expected)


def _integrity(tarball: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()


def _split_source(source: str, own_spec: str) -> tuple[str, str]:
    """`package/x` → (own spec, `package/x`); `kdbush@4.0.2:package/LICENSE` → (`kdbush@4.0.2`, `package/LICENSE`)."""
    spec, separator, member = source.partition(":")
    return (spec, member) if separator else (own_spec, source)


def check_against_npm_tarballs(tarballs: dict[str, Path], directory: Path = LEAFLET_DIR) -> None:
    """Each tarball's integrity equals the manifest's and each vendored file equals its tarball's copy.
    `tarballs`: npm spec → downloaded tarball, for every spec of `tarball_integrities(directory)`."""
    own_spec = package_spec(directory)
    for spec, expected in tarball_integrities(directory).items():
        actual = _integrity(tarballs[spec])
        if actual != expected:
            raise VendorMismatch(f"{tarballs[spec].name}: integrity {actual} != {expected}")
    for name, source in manifest(directory)["source_paths"].items():
        spec, member_path = _split_source(source, own_spec)
        with tarfile.open(tarballs[spec], "r:gz") as archive:
            member = archive.extractfile(member_path)
            if member is None or member.read() != (directory / name).read_bytes():
                raise VendorMismatch(f"{name} differs from {member_path} in {tarballs[spec].name}")


def check_against_npm_tarball(tarball: Path, directory: Path = LEAFLET_DIR) -> None:
    """The one-tarball case (a package without extra tarballs)."""
    check_against_npm_tarballs({package_spec(directory): tarball}, directory)


def fetch_and_check(directory: Path) -> None:
    """`npm pack` every tarball the manifest names, then `check_against_npm_tarballs`."""
    with tempfile.TemporaryDirectory(prefix="vendor-npm-") as tmp:
        tarballs = {}
        for spec in tarball_integrities(directory):
            packed = subprocess.run(
                ["npm", "pack", spec, "--json", "--silent"], cwd=tmp, check=True, capture_output=True, text=True
            )
            tarballs[spec] = Path(tmp) / json.loads(packed.stdout)[0]["filename"]
        check_against_npm_tarballs(tarballs, directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=[SITE_VENDOR_ROOT],
                        help="directories holding vendored packages (default: the site's)")
    parser.add_argument("--from-npm", action="store_true", help="also fetch the packages with `npm pack`")
    args = parser.parse_args(argv)
    packages = [package for root in args.roots for package in vendored_packages(root)]
    if not packages:
        parser.error(f"no vendored package (a directory with {MANIFEST}) under {', '.join(map(str, args.roots))}")
    for directory in packages:
        files = check_vendored(directory)
        print(f"{package_spec(directory)}: {len(files)} vendored files match {MANIFEST}")
        if args.from_npm:
            fetch_and_check(directory)
            print(f"{package_spec(directory)}: npm tarball integrity verified; vendored files identical")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
