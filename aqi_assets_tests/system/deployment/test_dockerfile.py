"""The user-code image's install steps are the README's own, and they work.

No Docker daemon here, so the image is not built. Instead: the Dockerfile's RUN steps must be exactly the
Makefile's `install` target (what the README's quick start runs), and those steps are run in a fresh venv on a
copy of what the Dockerfile COPYs. To keep it cheap the fresh venv sees the test venv's packages (a path entry)
and installs with `--no-deps --no-build-isolation`: the dependency download is the only part left out. Then the
code location is loaded from the fresh install.
"""

from __future__ import annotations

import re
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from aqi_assets_tests.support.samples import PROJECT_ROOT

pytestmark = pytest.mark.deployment

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def makefile_install_commands() -> list[list[str]]:
    """The commands `make install` runs, with the Makefile's variables filled in as the Dockerfile names them."""
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    variables = {"$(PYTHON)": "python3", "$(VENV)": ".venv", "$(BIN)": ".venv/bin"}
    commands = []
    for target in ("$(BIN)/python:", "install: $(BIN)/python"):
        body = makefile.split(f"\n{target}\n", 1)[1]
        for line in body.splitlines():
            if not line.startswith("\t"):
                break
            for name, value in variables.items():
                line = line.replace(name, value)
            commands.append(shlex.split(line.strip()))
    return commands


def test_dockerfile_install_steps_are_the_readme_ones() -> None:
    runs = [shlex.split(rest) for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    install_runs = [argv for argv in runs if "venv" in " ".join(argv) or "pip" in argv[0]]
    assert install_runs == makefile_install_commands()
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make run" in readme and "creates .venv, installs the project" in readme
    copies = [rest.split() for keyword, rest in dockerfile_instructions() if keyword == "COPY"]
    copied = {source for args in copies for source in args[:-1]}
    assert {"setup.py", "pyproject.toml", "requirements", "aqi_assets"} <= copied
    cmd = next(rest for keyword, rest in dockerfile_instructions() if keyword == "CMD")
    assert '"code-server", "start", "-m", "aqi_assets.definitions"' in cmd


def test_dockerfile_install_steps_run_in_a_fresh_venv_and_the_location_loads(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for keyword, rest in dockerfile_instructions():  # the build context the Dockerfile copies
        if keyword == "COPY" and not rest.startswith("deploy/"):
            *sources, _ = rest.split()
            for source in sources:
                target = app / source
                if (PROJECT_ROOT / source).is_dir():
                    shutil.copytree(PROJECT_ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copyfile(PROJECT_ROOT / source, target)

    commands = makefile_install_commands()
    assert commands[0][:3] == ["python3", "-m", "venv"]
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=app, check=True)
    venv_site = next((app / ".venv" / "lib").glob("python3*/site-packages"))
    # The dependencies come from the test venv as a plain path entry (its own .pth hooks, including this
    # project's editable install, are not processed), so `aqi_assets` can only come from the fresh install.
    (venv_site / "zz_test_venv_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = commands[-1]
    assert install[1:] == ["install", "--quiet", "-c", "requirements/lock.txt", "-e", "."]
    subprocess.run(  # with the lock from the copied build context: pip fails if the COPY left it out
        [".venv/bin/pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-c", "requirements/lock.txt",
         "-e", "."],
        cwd=app,
        check=True,
        capture_output=True,
    )
    probe = (
        "import aqi_assets, dagster as dg\n"
        "from aqi_assets.definitions import defs\n"
        "d = defs()\n"
        "print(aqi_assets.__file__)\n"
        "print(sorted(job.name for job in d.resolve_all_job_defs()))\n"
    )
    loaded = subprocess.run(
        [str(app / ".venv" / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    module_file, jobs = loaded.stdout.strip().splitlines()[-2:]
    assert module_file.startswith(str(app / "aqi_assets"))
    assert "ingest_5min_job" in jobs and "ingest_24h_job" in jobs
