"""`wardgate config check`: every problem serve would stop on, as `yaml.path: problem` lines.

The configs are the ones a newcomer actually wrote (issue 11): each must be refused by the
check with a line that points at the field, and by `serve` with the very same lines (both call
`check_config`), before anything loads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from wardgate.cli.main import app
from wardgate.config import load_config
from wardgate.configcheck import check_config
from wardgate.errors import ConfigError
from wardgate.guards import GuardPipeline, GuardsConfig

runner = CliRunner()


def _write(tmp_path: Path, config: dict) -> Path:
    base = {
        "database_url": f"sqlite:///{tmp_path / 'wg.db'}",
        "auth": {"secret_file": str(tmp_path / "secret")},
    }
    path = tmp_path / "wardgate.yaml"
    path.write_text(yaml.safe_dump({**base, **config}))
    return path


def _check(path: Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["config", "check", str(path)])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines


GOOD_MODEL = {"name": "m1", "backend": "llamacpp"}

#: (what the newcomer wrote, the line the check must print)
BAD_CONFIGS = [
    (
        {"models": [{"name": "m1", "backend": "llamacpp", "path": "/nonexistent/model.gguf"}]},
        "models.0.path: weights file not found: /nonexistent/model.gguf",
    ),
    (
        {"models": [{"name": "m1", "backend": "llamacp"}]},
        "models.0.backend: unknown backend 'llamacp' (did you mean 'llamacpp'?); "
        "known backends: anthropic, llamacpp, minilm, openai",
    ),
    (
        {
            "models": [
                {
                    "name": "v",
                    "backend": "openai",
                    "base_url": "https://api.openai.com/v1",
                    "api_key_env": "WG_TEST_SURELY_UNSET_KEY",
                }
            ]
        },
        "models.0.api_key_env: environment variable 'WG_TEST_SURELY_UNSET_KEY' (api_key_env) "
        "is not set",
    ),
    (
        {"models": [GOOD_MODEL], "routing": {"logical_models": {"auto": ["m1", "ghost"]}}},
        "routing.logical_models.auto.1: unknown model 'ghost'",
    ),
    (
        {
            "models": [GOOD_MODEL],
            "guards": {"input": [{"type": "secrets", "options": {"acton": "block"}}]},
        },
        "guards.input.0.options.acton: unknown key (did you mean 'action'?)",
    ),
    (
        {"models": []},
        "models: no models are configured, so the gateway would answer every request with an "
        "error; add at least one (see examples/wardgate.yaml)",
    ),
    (
        {"models": [GOOD_MODEL], "guards": {"output": [{"type": "pii_typo"}]}},
        "guards.output.0.type: unknown guard type 'pii_typo'",
    ),
    (
        {
            "models": [GOOD_MODEL],
            "guards": {
                "input": [{"type": "llm_judge", "options": {"model": "llama-guard"}}],
            },
        },
        "guards.input.0.options.model: unknown model 'llama-guard'",
    ),
    (
        {"models": [GOOD_MODEL], "guards": {"routes": {"ato": {"input": []}}}},
        "guards.routes.ato: no model or logical model is named 'ato', so these guards never run",
    ),
    (
        {
            "models": [
                {**GOOD_MODEL, "verify": {"require_signature": True, "public_key": "/no.pub"}}
            ]
        },
        "models.0.verify.require_signature: require_signature is set but no signature file "
        "is configured",
    ),
    (
        {"models": [GOOD_MODEL, {"name": "m2", "fallbacks": ["m3"]}]},
        "models.1.fallbacks: unknown fallback 'm3'",
    ),
    (
        {"models": [{"name": "x", "backend": "openai", "tempreature": 3}]},
        "models.0.tempreature: unknown key (known keys: allow_vendor_fallback, api_key_env,",
    ),
    (
        {"models": [{"name": "x", "backend": "anthropic"}]},
        "models.0.base_url: backend 'anthropic' needs base_url",
    ),
]


@pytest.mark.parametrize(("config", "line"), BAD_CONFIGS, ids=[b[1][:40] for b in BAD_CONFIGS])
def test_check_names_the_problem_with_its_yaml_path(
    tmp_path: Path, config: dict, line: str
) -> None:
    code, lines = _check(_write(tmp_path, config))
    assert code == 2
    assert any(printed.startswith(line) for printed in lines), lines


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "models": [
                {"name": "a", "path": "/nope/a.gguf"},
                {"name": "b", "backend": "llamacp"},
            ],
            "routing": {"logical_models": {"auto": ["a", "ghost"]}},
        },
    )
    code, lines = _check(path)
    assert code == 2
    assert [line.split(":")[0] for line in lines] == [
        "models.0.path",
        "models.1.backend",
        "routing.logical_models.auto.1",
    ]


def test_validation_errors_are_path_lines_without_urls(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [GOOD_MODEL], "server": {"port": "eighty", "bogus": 1}})
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "errors.pydantic.dev" not in result.output and "https://" not in result.output
    assert "server.port: input should be a valid integer" in result.output
    assert "server.bogus: unknown key" in result.output


def test_a_guard_option_typo_at_pipeline_build_is_one_sentence_without_urls() -> None:
    config = GuardsConfig.model_validate({"input": [{"type": "pii", "options": {"acton": 1}}]})
    with pytest.raises(ConfigError) as info:
        GuardPipeline.from_config(config)
    assert info.value.message == (
        "guard 'pii': invalid options: options.acton: unknown key (did you mean 'action'?)"
    )


def test_file_can_be_positional_or_option_but_not_two_different_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [GOOD_MODEL]})
    assert runner.invoke(app, ["config", "check", str(path)]).exit_code == 0
    assert runner.invoke(app, ["config", "check", "--config", str(path)]).exit_code == 0
    other = tmp_path / "other.yaml"
    other.write_text("models: []\n")
    both = runner.invoke(app, ["config", "check", str(path), "--config", str(other)])
    assert both.exit_code == 2 and "once" in both.output


def test_the_shipped_examples_pass_with_their_vendor_keys_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _check(Path("examples/wardgate.yaml"))[0] == 0
    code, lines = _check(Path("examples/hybrid.yaml"))
    assert code == 2  # the two vendor keys are unset here...
    assert {line.split(":")[0] for line in lines} == {
        "models.1.api_key_env",
        "models.2.api_key_env",
    }
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    code, lines = _check(Path("examples/hybrid.yaml"))
    assert code == 0, lines  # ...and it passes once they are set
    assert lines[0] == "ok: 3 model(s)"


def test_check_config_is_the_function_serve_runs(tmp_path: Path) -> None:
    """`serve` prints check_config's problems, one ERROR line each, and exits before binding
    a port or loading anything (so this takes a couple of seconds, not a model load)."""
    config = {
        "server": {"port": 1},  # privileged: serve would fail here if it got that far
        "models": [
            {"name": "m1", "path": "/nope.gguf"},  # missing weights
            {"name": "m2", "backend": "llamacp"},
            {  # missing vendor key
                "name": "v",
                "backend": "openai",
                "base_url": "https://api.openai.com/v1",
                "api_key_env": "WG_TEST_SURELY_UNSET_KEY",
            },
        ],
    }
    path = _write(tmp_path, config)
    expected = [str(p) for p in check_config(load_config(path))]
    assert len(expected) == 3
    proc = subprocess.run(
        [sys.executable, "-m", "wardgate", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert errors[:-1] == [f"ERROR: {line}" for line in expected]
    assert errors[-1].startswith("ERROR: cannot start: 3 problem(s)")
    assert "Traceback" not in proc.stderr


def test_serve_refuses_an_empty_model_list(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": []})
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "ERROR: models: no models are configured" in result.output


def test_show_fills_in_defaults_and_masks_secrets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "database_url": "postgresql+psycopg://wardgate:hunter2-pg@db.internal/wg",
            "redis_url": "redis://:hunter3-redis@cache:6379/0?password=hunter4",
            "models": [
                {
                    "name": "v",
                    "backend": "openai",
                    "base_url": "https://user:hunter5@proxy.example/v1",
                    "api_key_env": "OPENAI_API_KEY",
                    "options": {"api_key": "sk-hunter6", "proxy": "http://u:hunter7@p:3128"},
                }
            ],
            "guards": {"output": [{"type": "pii"}]},
        },
    )
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    for secret in ("hunter2", "hunter3", "hunter4", "hunter5", "hunter6", "hunter7"):
        assert secret not in result.output
    shown = yaml.safe_load(result.output)
    assert shown["database_url"] == "postgresql+psycopg://wardgate:***@db.internal/wg"
    assert shown["models"][0]["api_key_env"] == "OPENAI_API_KEY"  # a name, not a secret
    assert shown["models"][0]["n_ctx"] == 2048  # defaults filled in
    assert shown["server"]["port"] == 8080
    assert shown["guards"]["output"][0]["options"]["min_score"] is not None  # guard defaults
    as_json = runner.invoke(app, ["config", "show", "--json", str(path)])
    assert as_json.exit_code == 0 and "hunter" not in as_json.output
