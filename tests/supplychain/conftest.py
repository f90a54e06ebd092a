"""Shared fixtures: the bypass corpus from ``bench/supplychain_corpus.py`` written to disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import supplychain_corpus  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, supplychain_corpus.Sample]:
    folder = tmp_path_factory.mktemp("corpus")
    samples = supplychain_corpus.malicious_samples() + supplychain_corpus.benign_samples()
    return supplychain_corpus.write_corpus(folder, samples)


@pytest.fixture(scope="session")
def corpus_path(corpus: dict[str, supplychain_corpus.Sample]):
    """Path of a corpus sample by file name."""

    def find(filename: str) -> str:
        return next(path for path, sample in corpus.items() if sample.filename == filename)

    return find
