"""`wardgate keys create` takes the model list both ways the docs show, and `keys list`
never cuts a column to fit a narrow terminal."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from wardgate.cli.main import app

runner = CliRunner()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "wardgate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'wg.db'}",
                "auth": {"secret_file": str(tmp_path / "secret")},
                "models": [{"name": "smollm2-135m"}],
            }
        )
    )
    return path


def _create(config: Path, *args: str) -> dict:
    result = runner.invoke(app, ["keys", "create", "--json", "-c", str(config), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_models_as_a_comma_list_or_repeated_and_combined(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert _create(config, "--owner", "a", "--models", "m1,m2")["models"] == ["m1", "m2"]
    assert _create(config, "--owner", "b", "--model", "m1", "-m", "m2")["models"] == ["m1", "m2"]
    both = _create(config, "--owner", "c", "--model", "m1", "--models", "m2, m1,m3")
    assert both["models"] == ["m1", "m2", "m3"]
    assert _create(config, "--owner", "d")["models"] == ["*"]


def test_keys_list_keeps_every_column_whole_at_80_columns(tmp_path: Path) -> None:
    config = _config(tmp_path)
    owner = "billing-application-with-a-very-long-owner-name"
    models = "smollm2-135m,gpt-4o-mini,claude-haiku,another-long-model-name"
    created = _create(config, "--owner", owner, "--models", models, "--tier", "restricted")
    result = runner.invoke(app, ["keys", "list", "-c", str(config)], terminal_width=80)
    assert result.exit_code == 0
    header, row = result.output.splitlines()[:2]
    assert header.split() == [
        "ID", "PREFIX", "OWNER", "MODELS", "TIER", "RPM", "TPM", "ADMIN", "STATUS", "EXPIRES"
    ]  # fmt: skip
    for value in (created["id"], owner, models, "restricted", "active", "never"):
        assert value in row.split(), value
