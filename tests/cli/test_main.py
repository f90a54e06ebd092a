"""The top-level CLI: sub-apps are mounted, `config check` validates, bad configs exit 2,
`--version`, and `--help` that names values the way operators do."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from wardgate.cli.main import app

runner = CliRunner()


def test_every_sub_app_is_mounted() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "config", "keys", "audit", "model", "redteam"):
        assert command in result.output


def test_config_check_accepts_the_examples(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    for example in ("examples/wardgate.yaml", "examples/hybrid.yaml"):
        result = runner.invoke(app, ["config", "check", "--config", example])
        assert result.exit_code == 0, result.output
        assert "smollm2-135m: backend=llamacpp deployment=on_prem" in result.output


def test_config_check_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: x\n    backend: openai\n    tempreature: 3\n")
    result = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 2
    assert "models.0" in result.output and "tempreature" in result.output


def test_config_check_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["config", "check", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    result = runner.invoke(app, ["config", "check", "--config", str(broken)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_unknown_fallback_and_vendor_without_url_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  - name: a\n    fallbacks: [b]\n")
    result = runner.invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 2 and "unknown fallback 'b'" in result.output
    cfg.write_text("models:\n  - name: v\n    backend: anthropic\n")
    result = runner.invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 2 and "needs base_url" in result.output


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {port: -1}\n")
    result = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "server.port" in result.output


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"wardgate {version('wardgate')}"


def _commands():
    import typer.main

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


INTERNAL_NAMES = ("<bool>", "<str>", "<int", "<float", "<path>", "<list[", "{")


def test_help_shows_no_internal_type_names_and_every_option_is_described() -> None:
    commands = _commands()
    assert len(commands) > 25  # every sub-app and its commands
    for path, command in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        for name in INTERNAL_NAMES:
            assert name not in result.output, (path, name, result.output)
        for param in command.params:
            if param.param_type_name == "option":
                assert (param.help or "").strip(), f"wardgate {' '.join(path)}: {param.name}"


def test_usage_line_uses_click_notation() -> None:
    result = runner.invoke(app, ["keys", "revoke", "--help"], terminal_width=100)
    assert "Usage: wardgate keys revoke [OPTIONS] KEY" in result.output
    result = runner.invoke(app, ["config", "check", "--help"], terminal_width=100)
    assert "Usage: wardgate config check [OPTIONS] [FILE]" in result.output
