"""The real samples the tests read are part of the repository, each listed in data/README.md with its sha256."""

from __future__ import annotations

import hashlib
import re
import subprocess

from aqi_assets_tests.support.samples import PROJECT_ROOT, TEST_DATA, sample_bytes

README = TEST_DATA / "README.md"


VENDORED = TEST_DATA / "vendor"  # vendored test tools: checked file by file against their MANIFEST.json instead


def sample_files() -> list[str]:
    return sorted(
        path.relative_to(TEST_DATA).as_posix()
        for path in TEST_DATA.rglob("*")
        if path.is_file() and path != README and VENDORED not in path.parents
    )


def test_no_sample_is_ignored_by_git() -> None:
    # The lake's `data/` pattern in .gitignore once matched this folder too: a fresh clone had no samples.
    files = [str(TEST_DATA.relative_to(PROJECT_ROOT) / name) for name in sample_files()] + [
        str(README.relative_to(PROJECT_ROOT))
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert ignored.returncode == 1, f"ignored by git, so missing from a clone:\n{ignored.stdout}{ignored.stderr}"


def test_every_sample_is_listed_with_the_sha256_of_its_published_bytes() -> None:
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| ([0-9a-f]{64}) \|", README.read_text(), flags=re.MULTILINE))
    assert sorted(listed) == sample_files()
    for name, sha256 in listed.items():
        assert hashlib.sha256(sample_bytes(name)).hexdigest() == sha256, name
