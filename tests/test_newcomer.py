"""The newcomer's path, followed to the letter: clone, `make run`, paste the banner's examples.

What this covers: a `git clone` of this checkout's HEAD (so only committed files, as a newcomer
gets them), the clone's own Makefile and code (`make run PORT=…`), the first-start banner, the
banner's `curl`, OpenAI SDK and `keys create` commands run verbatim in a shell, real answers
from the embedded SmolLM2, and a clean Ctrl+C shutdown (graceful, no traceback; like any
program interrupted by Ctrl+C, the process ends by SIGINT and `make` says "Error 130").

What it does not cover, to stay within the suite's time budget: building the virtualenv from
PyPI (llama-cpp-python alone compiles for ~6 minutes). The clone gets a fresh venv whose
site-packages point (one `.pth` line) at this venv's installed dependencies; the clone itself
is laid into it as an editable install would be (its `src/` on the path, its own metadata and
entry points, the `wardgate` script; pip cannot build it offline, see `_venv_over_this_one`),
and `make run`'s install stamp is set, so `make run` goes straight to `wardgate serve`. The
dependency resolution `make run` would do is therefore not exercised here (the dry run of its
install commands is, in `test_make_run_installs_only_the_runtime_extras`), and the venv
already has the dev tools, so the banner's "install the SDK" hint is exercised by
`tests/gateway/test_banner.py` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def _git_head_available() -> bool:
    return shutil.which("git") is not None and (ROOT / ".git").exists()


def _outside_make() -> dict[str, str]:
    """This environment as a shell has it: the suite itself may run under `make test`, whose
    MAKELEVEL/MAKEFLAGS would make a nested make print 'Entering directory' lines."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}


def test_make_run_installs_only_the_runtime_extras() -> None:
    dry = subprocess.run(
        ["make", "-n", "run", "PORT=8123", "CONFIG=examples/hybrid.yaml", "VENV=/nonexistent"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=_outside_make(),
    )  # fmt: skip
    installs = [line for line in dry.stdout.splitlines() if "pip install" in line]
    assert any("-e '.[guards,semantic,supplychain]'" in line for line in installs), installs
    assert not any("dev" in line for line in installs), installs
    assert dry.stdout.strip().splitlines()[-1] == (
        "/nonexistent/bin/wardgate serve --config examples/hybrid.yaml --port 8123"
    )
    tests = subprocess.run(
        ["make", "-n", "test", "VENV=/nonexistent"], cwd=ROOT, capture_output=True, text=True,
        env=_outside_make(),
    )  # fmt: skip
    assert "-e '.[guards,semantic,supplychain,dev,whitebox]'" in tests.stdout


def _venv_over_this_one(venv: Path, clone: Path) -> None:
    """A venv that sees this venv's dependencies and runs the clone's code.

    The clone is installed the way an editable install lays it out (a path file, the
    distribution metadata with the clone's entry points, the console script), written here
    because pip cannot build it offline: its build backend needs setuptools >= 77, which pip's
    build isolation fetches from PyPI.
    """
    import tomllib

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    # Path files are read in name order: the clone's code first, then the dependencies.
    (site / "_0_wardgate_clone.pth").write_text(str(clone / "src") + "\n")
    (site / "_1_wardgate_test_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    project = tomllib.loads((clone / "pyproject.toml").read_text())["project"]
    info = site / f"wardgate-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: wardgate\nVersion: {project['version']}\n"
    )
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
            for group, entries in groups.items()
        )
    )
    for name, target in project.get("scripts", {}).items():
        module, _, attr = target.partition(":")
        script = venv / "bin" / name
        script.write_text(
            f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {attr}\n"
            f"sys.exit({attr}())\n"
        )
        script.chmod(0o755)
    digest = hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()[:12]
    (venv / f".installed-runtime-{digest}").touch()


def _copy_terminal(controller: int, out: Path) -> None:
    """Copy what the program writes to its terminal into ``out`` until the terminal closes."""
    with out.open("ab") as sink:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every process holding the terminal has gone
                return
            if not chunk:
                return
            sink.write(chunk.replace(b"\r\n", b"\n"))
            sink.flush()


def _banner_commands(banner: str) -> dict[str, str]:
    """The three commands of the banner, as a reader would copy them (continuations kept)."""
    lines = banner.splitlines()
    curl_start = next(i for i, line in enumerate(lines) if line.strip().startswith("curl "))
    curl = "\n".join(lines[curl_start : curl_start + 3])
    sdk_start = next(i for i, line in enumerate(lines) if " -c 'from openai import" in line)
    sdk = "\n".join(lines[sdk_start : sdk_start + 3])
    keys = next(line for line in lines if " keys create --owner my-app" in line)
    return {"curl": curl.strip(), "sdk": sdk.strip(), "keys": keys.strip()}


@pytest.mark.slow
@pytest.mark.skipif(not _git_head_available(), reason="needs git and a git checkout")
def test_a_fresh_clone_serves_the_readme_quick_start(tmp_path: Path) -> None:
    clone, venv = tmp_path / "wardgate", tmp_path / "venv"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    _venv_over_this_one(venv, clone)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import wardgate; print(wardgate.__file__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(clone)), where.stdout  # the clone's code runs

    port = free_port()
    env = {k: v for k, v in _outside_make().items() if not k.endswith("_API_KEY")}
    env.pop("VIRTUAL_ENV", None)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    # A newcomer runs `make run` in a terminal: stdout is a pseudo-terminal, so the first
    # admin key is shown there (off a terminal it goes to a 0600 file instead).
    controller, terminal = pty.openpty()
    copier = threading.Thread(target=_copy_terminal, args=(controller, out), daemon=True)
    copier.start()
    with err.open("w") as stderr:
        server = subprocess.Popen(
            ["make", "run", f"VENV={venv}", f"PORT={port}"],
            cwd=clone, env=env, stdout=terminal, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    os.close(terminal)
    try:
        deadline = time.monotonic() + 300
        while "Wardgate is ready on" not in err.read_text():
            assert server.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.5)
        assert f"Wardgate is ready on http://127.0.0.1:{port}/v1" in err.read_text()
        banner = out.read_text()
        assert "Created the first admin key" in banner
        assert f"from another terminal, in {clone}:" in banner
        commands = _banner_commands(banner)

        def shell(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip

        curl = shell(commands["curl"])
        assert curl.returncode == 0, curl.stderr
        answer = json.loads(curl.stdout)
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"].strip()

        sdk = shell(commands["sdk"])
        assert sdk.returncode == 0, sdk.stderr
        assert sdk.stdout.strip()

        keys = shell(commands["keys"])
        assert keys.returncode == 0, keys.stderr
        new_key = re.search(r"^\s+(wg-\S+)$", keys.stdout, re.MULTILINE)
        assert new_key, keys.stdout
        # The application key works against the running gateway (same database).
        models = shell(
            f"curl -sf http://127.0.0.1:{port}/v1/models -H 'Authorization: Bearer "
            f"{new_key.group(1)}'"
        )
        assert json.loads(models.stdout)["data"][0]["id"] == "smollm2-135m"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl+C in the terminal
        code = server.wait(timeout=60)
    log = err.read_text()
    assert code in (0, -signal.SIGINT), log[-3000:]
    assert "Application shutdown complete." in log and "Finished server process" in log
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
