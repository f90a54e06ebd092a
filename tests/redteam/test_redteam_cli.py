"""``wardgate redteam`` end to end through the Typer app, against a fake vendor over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redteam_helpers import ITEMS, write_suite
from tests.conftest import free_port
from tests.fakes import FakeOpenAI, run_server
from typer.testing import CliRunner

from wardgate.cli.redteam import redteam_app

runner = CliRunner()


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with run_server(FakeOpenAI().app) as url:
        yield f"{url}/v1"


def test_run_report_gate_and_compare(echo_url: str, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "mini.jsonl", ITEMS)
    out_a = tmp_path / "a"
    args = ["run", "--target", f"openai:{echo_url}", "--model", "echo", "--suite", str(suite),
            "--out", str(out_a), "--repeats", "2", "--no-progress", "--harm-judge", "compliance"]
    result = runner.invoke(redteam_app, args)
    assert result.exit_code == 0, result.output
    assert "overall (attacks)" in result.output
    for name in ("report.html", "summary.json", "junit.xml", "results.sarif", "results.jsonl"):
        assert (out_a / name).is_file(), name

    again = runner.invoke(redteam_app, args)
    assert again.exit_code == 0 and "0 attempts run, 12 already done" in again.output

    gated = runner.invoke(redteam_app, ["report", str(out_a), "--fail-above",
                                        "prompt_injection=0.5"])
    assert gated.exit_code == 1
    assert "gate prompt_injection: 1.000 (limit 0.5) FAIL" in gated.output

    out_b = tmp_path / "b"
    other = runner.invoke(redteam_app, [*args[:7], "--out", str(out_b), "--name", "echo-2",
                                        "--category", "benign", "--no-progress",
                                        "--fail-above", "false_refusal=0.0"])
    assert other.exit_code == 0, other.output
    compared = runner.invoke(redteam_app, ["compare", str(out_a), str(out_b), "--out",
                                           str(tmp_path / "cmp")])
    assert compared.exit_code == 0, compared.output
    assert "echo -> echo-2: 2 paired attempts" in compared.output
    assert (tmp_path / "cmp" / "comparison.html").is_file()


def test_clear_errors(echo_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1\n', encoding="utf-8")
    result = runner.invoke(redteam_app, ["run", "-t", f"openai:{echo_url}", "-s", str(bad),
                                         "-o", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2 and "bad.jsonl:line 1: not valid JSON" in result.output

    suite = write_suite(tmp_path / "mini.jsonl", ITEMS)
    down = f"openai:http://127.0.0.1:{free_port()}/v1"
    result = runner.invoke(redteam_app, ["run", "-t", down, "-s", str(suite),
                                         "-o", str(tmp_path / "down"), "--no-progress"])
    assert result.exit_code == 3 and "cannot reach target" in result.output

    result = runner.invoke(redteam_app, ["run", "-t", "nonsense", "-s", str(suite),
                                         "-o", str(tmp_path / "n"), "--no-progress"])
    assert result.exit_code == 2 and "unknown target" in result.output

    result = runner.invoke(redteam_app, ["run", "-t", f"openai:{echo_url}", "-s", str(suite),
                                         "-o", str(tmp_path / "g"), "--fail-above", "harmful"])
    assert result.exit_code == 2 and "CATEGORY=RATE" in result.output


def test_suites_listing() -> None:
    result = runner.invoke(redteam_app, ["suites", "--verify"])
    assert result.exit_code == 0, result.output
    assert "jailbreak" in result.output and "sha256 ok" in result.output
