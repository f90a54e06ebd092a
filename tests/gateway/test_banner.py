"""The first-start banner prints commands that work as printed: this installation's Python
and `wardgate` (never a bare `python` that may not be the venv's), the config it was started
with, and how to get the OpenAI SDK when it is missing."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wardgate.gateway import bootstrap
from wardgate.gateway.bootstrap import command_forms, first_start_banner


def _banner(**overrides: object) -> str:
    args: dict[str, object] = {
        "key": "wg-test",
        "prefix": "wg-test",
        "base_url": "http://127.0.0.1:8080/v1",
        "model": "smollm2-135m",
    }
    args.update(overrides)
    return first_start_banner(**args)  # type: ignore[arg-type]


def test_forms_are_this_interpreter_and_its_wardgate_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv = Path(sys.executable).parent
    monkeypatch.chdir(venv.parent.parent)  # e.g. the checkout holding .venv/
    python, wardgate = command_forms()
    assert python == str(Path(sys.executable).relative_to(Path.cwd()))
    assert wardgate == str((venv / "wardgate").relative_to(Path.cwd()))
    monkeypatch.chdir(tmp_path)  # elsewhere: absolute paths
    assert command_forms() == (sys.executable, str(venv / "wardgate"))


def test_the_banner_uses_those_forms_and_the_config_path() -> None:
    python, wardgate = command_forms()
    text = _banner(config_path="examples/wardgate.yaml")
    assert f"    {python} -c 'from openai import OpenAI;" in text
    assert f"    {wardgate} keys create --owner my-app --config examples/wardgate.yaml" in text
    assert "\n    python -c" not in text and "\n    wardgate " not in text


def test_without_the_sdk_the_banner_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        bootstrap.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openai" else real(name, *a),
    )
    pip = shlex.quote(str(Path(sys.executable).with_name("pip")))
    assert f"# needs the OpenAI SDK first:  {pip} install openai" in _banner()


def test_the_printed_keys_create_command_runs_verbatim(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the folder the gateway runs in, which the banner names
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"database_url": "sqlite:///wg.db", "auth": {"secret_file": "secret"}, "models": []}
        )
    )
    banner = _banner(config_path="c.yaml")
    assert f"from another terminal, in {tmp_path}:" in banner
    line = next(x.strip() for x in banner.splitlines() if "keys create" in x)
    proc = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Created key" in proc.stdout and (tmp_path / "wg.db").exists()
