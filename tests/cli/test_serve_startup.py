"""`wardgate serve` start-up failures: one ERROR line, a non-zero exit, no traceback.

Run as the operator runs it (a real process, real stderr): a port already in use, weights that
do not verify, weights llama.cpp cannot load. `--debug` is the way to see the traceback.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from tests.conftest import free_port


def _config(tmp_path: Path, model: dict) -> Path:
    config = {
        "database_url": f"sqlite:///{tmp_path / 'wg.db'}",
        "auth": {"secret_file": str(tmp_path / "secret")},
        "models": [model],
        "guards": {"input": [], "output": []},  # start fast: nothing here is about guards
    }
    path = tmp_path / "wardgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _serve(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wardgate", "serve", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


def test_port_in_use_is_one_line_naming_the_port_and_how_to_pick_another(tmp_path: Path) -> None:
    config = _config(tmp_path, {"name": "m", "backend": "llamacpp"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(tmp_path, config, "--port", str(port))
    assert proc.returncode == 1
    assert _error_lines(proc.stderr) == [
        f"ERROR: cannot listen on 127.0.0.1:{port}: port {port} is already in use. Pick another "
        "port with --port N (make run PORT=N), or set server.port in the config."
    ]
    assert "Traceback" not in proc.stderr
    assert "Created the first admin key" not in proc.stdout  # it stopped before anything else


def test_weights_that_do_not_verify_are_one_error_line(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"not really a model")
    wrong = hashlib.sha256(b"something else").hexdigest()
    config = _config(
        tmp_path, {"name": "m", "path": str(weights), "verify": {"sha256": wrong}}
    )
    proc = _serve(tmp_path, config, "--port", "0")
    assert proc.returncode == 1
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert "cannot start: model.gguf: sha256" in errors[0]
    assert "does not match the pinned" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "Exception in 'lifespan' protocol" not in proc.stderr


def test_weights_llama_cannot_load_are_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF" + b"\0" * 64)  # a GGUF magic and nothing a loader can use
    config = _config(
        tmp_path,
        {"name": "m", "path": str(weights), "verify": {"template_audit": "off"}},
    )
    quiet = _serve(tmp_path, config, "--port", "0")
    assert quiet.returncode == 1
    errors = _error_lines(quiet.stderr)
    assert len(errors) == 1 and "cannot start:" in errors[0], quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = _serve(tmp_path, config, "--port", "0", "--debug")
    assert loud.returncode == 1
    assert "Traceback (most recent call last)" in loud.stderr
