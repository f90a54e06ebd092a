"""The serving path must never import torch, even when the ``whitebox`` extra is installed.

torch costs ~1 s and hundreds of MB at import; a gateway that pulled it in through a stray
import would start slower and carry an attack surface it does not use. Checked in a fresh
interpreter, after building the app with the embedded model and loading the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_torch_is_installed_for_this_check_to_mean_something() -> None:
    pytest.importorskip("torch")


def test_gateway_and_cli_do_not_import_torch(tmp_path) -> None:
    code = textwrap.dedent("""
        import sys
        from wardgate.config import load_config
        from wardgate.gateway.app import create_app
        from wardgate.cli.main import app
        import wardgate.cli.whitebox, wardgate.whitebox.diff, wardgate.whitebox.export
        config = load_config(None)
        create_app(config)
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in
                       ('torch', 'transformers', 'peft', 'accelerate'))
        print(heavy)
        assert not heavy, heavy
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout
    assert done.stdout.strip() == "[]"
