"""Fixtures for the red-team tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from redteam_helpers import write_suite


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "mini.jsonl")
