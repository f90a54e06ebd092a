"""Provenance settings: the receipt signing keys (gateway-wide) and the watermark (per model).

Secrets never sit in the file: the receipt key and the watermark key are read from an
environment variable the config *names*, else from a key file (created 0600 on first start).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wardgate.validation import field_error

WatermarkScheme = Literal["kgw", "selfhash", "expmin"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReceiptsConfig(_Strict):
    """Signed receipts on every answer (``docs/provenance.md``)."""

    enabled: bool = True
    #: Environment variable holding the active Ed25519 private key (PEM); wins over the file.
    key_env: str = "WARDGATE_RECEIPT_KEY"
    #: The active private key (PKCS#8 PEM); generated (0600) on first start when missing.
    #: Unset: ``receipt-key.pem`` in the directory of ``auth.secret_file``.
    key_file: str | None = None
    #: Keys no longer used to sign but still published in the JWKS so that receipts they
    #: signed keep verifying (rotation): PEM files, public or private.
    previous_keys: list[str] = Field(default_factory=list)


class WatermarkConfig(_Strict):
    """A text watermark on one llamacpp model. Off unless the model entry has this block."""

    enabled: bool = True
    #: ``kgw``: Kirchenbauer et al. left-hash green lists (the hash of the ``h`` previous
    #: tokens picks them); ``selfhash``: the green list of a candidate is keyed by the min-hash
    #: of the ``h - 1`` previous tokens *and the candidate itself* (more robust to edits);
    #: ``expmin``: Aaronson's exponential-minimum sampling, distortion-free (no bias: each
    #: token is still drawn with the model's probability, over the key's randomness).
    scheme: WatermarkScheme = "kgw"
    #: Green-list fraction (kgw, selfhash).
    gamma: float = Field(default=0.25, gt=0, lt=1)
    #: Logit bias added to green tokens (kgw, selfhash).
    delta: float = Field(default=2.0, gt=0, le=20)
    #: Context width in tokens; default 1 for kgw, 4 for selfhash and expmin.
    h: int | None = Field(default=None, ge=1, le=8)
    #: Environment variable holding the watermark key (at least 32 characters); wins.
    key_env: str = "WARDGATE_WATERMARK_KEY"
    #: Key file, created (0600, 32 random bytes as hex) on first start when missing.
    #: Unset: ``watermark-key`` in the directory of ``auth.secret_file``.
    key_file: str | None = None
    #: z-score at or above which detection says "watermarked".
    z_threshold: float = Field(default=4.0, gt=0)
    #: Fewest scored tokens detection decides on; below it answers "insufficient tokens".
    min_tokens: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _context(self) -> WatermarkConfig:
        if self.scheme == "selfhash" and self.h is not None and self.h < 2:
            raise field_error("h", "selfhash needs h >= 2 (the candidate plus h - 1 tokens)")
        return self

    @property
    def context_width(self) -> int:
        if self.h is not None:
            return self.h
        return 1 if self.scheme == "kgw" else 4
