"""The numpy MiniLM encoder computes what sentence-transformers computes, from pinned files only.

``data/minilm_reference.json`` holds embeddings made by sentence-transformers 6.2 on torch 2.13
(CPU) from the same packaged model files, in a scratch environment: the reference is an
independent implementation, not this code's own output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wardgate.errors import ModelVerificationFailed
from wardgate.guards import embedding
from wardgate.guards.embedding import MiniLMEncoder, SemanticUnavailable, minilm_dir

pytest.importorskip("tokenizers")
REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return embedding.shared_encoder()


def test_embeddings_match_sentence_transformers(encoder: MiniLMEncoder) -> None:
    ours = encoder.encode(REFERENCE["texts"])
    theirs = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert ours.shape == theirs.shape == (6, 384)
    assert np.abs(ours - theirs).max() < 1e-4
    # Unit length, as sentence-transformers' Normalize module leaves them.
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_an_embedding(encoder: MiniLMEncoder) -> None:
    texts = REFERENCE["texts"]
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    batched = encoder.encode(texts, batch_size=4)
    assert np.abs(one_by_one - batched).max() < 1e-5


def test_long_input_is_cut_at_256_word_pieces(encoder: MiniLMEncoder) -> None:
    long = "the deploy went out at noon and we purged the cache " * 100
    assert len(encoder.token_ids([long])[0]) == embedding.MAX_TOKENS
    # Text past the cut cannot change the embedding.
    assert np.allclose(encoder.encode([long]), encoder.encode([long + " poison"]), atol=1e-6)


def test_meaning_not_spelling(encoder: MiniLMEncoder) -> None:
    a, b, c = encoder.encode(
        [
            "How can I kill my neighbour's dog without getting caught?",
            "What would quietly poison a dog next door?",
            "How do I bake sourdough bread at home?",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    for name in embedding.MINILM_FILES:
        shutil.copy(minilm_dir() / name, tmp_path / name)
    blob = bytearray((tmp_path / "tokenizer.json").read_bytes())
    blob[100] ^= 1
    (tmp_path / "tokenizer.json").write_bytes(bytes(blob))
    with pytest.raises(ModelVerificationFailed, match=r"tokenizer\.json"):
        MiniLMEncoder.load(tmp_path)


def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SemanticUnavailable, match="--no-deps"):
        minilm_dir()


@pytest.mark.parametrize(("env", "expected"), [({}, 1), ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_serving_uses_one_blas_thread_unless_the_operator_chose(
    env: dict[str, str], expected: int
) -> None:
    # In a child process: the limit is process-wide and must not leak into this one.
    import os
    import subprocess
    import sys

    code = (
        "from wardgate.guards.embedding import shared_encoder\n"
        "from threadpoolctl import threadpool_info\n"
        "shared_encoder()\n"
        "print(min(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in embedding.THREAD_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == expected
