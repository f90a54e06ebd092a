"""Signed receipts: a JWS (RFC 7515, Ed25519) over an RFC 8785 canonical JSON payload.

A receipt binds one answer to what produced it: the model asked, the backend that served it,
that backend's weight digest (as checked at load) or vendor model id, digests of the request
messages and of the returned content, the finish reason, usage and watermark parameters.
Anyone holding the published JWKS can check it offline (:func:`verify_receipt`); changing one
byte of the receipt, the content or the key makes the check fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from wardgate.errors import WardgateError
from wardgate.provenance.signing_keys import ALGORITHM, SigningKeys

#: Payload format version; bumped on any change a verifier must know about.
RECEIPT_VERSION = 1


class ReceiptInvalid(WardgateError):
    """A receipt that does not verify; ``code`` says why."""

    status = 400
    code = "receipt_invalid"
    type = "invalid_request_error"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def messages_digest(messages: Sequence[tuple[str, str]]) -> str:
    """SHA-256 of the canonical (RFC 8785) JSON of the request's ``[{role, content}]``."""
    body = [{"role": role, "content": content} for role, content in messages]
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


@dataclass(frozen=True)
class ReceiptSigner:
    """Builds and signs receipt payloads with the active key."""

    keys: SigningKeys

    def sign(
        self,
        *,
        audit_request_id: str,
        model: str | None,
        backend: str | None,
        weights: dict[str, Any] | None,
        request_sha256: str,
        content: str,
        finish_reason: str | None,
        usage: dict[str, int],
        watermark: dict[str, Any] | None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> str:
        now = time.time()
        payload = {
            "v": RECEIPT_VERSION,
            "id": "rcpt-" + secrets.token_hex(12),
            "audit_request_id": audit_request_id,
            "iat": int(now),
            "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "kid": self.keys.kid,
            "model": model,
            "backend": backend,
            "weights": weights,
            "request_sha256": request_sha256,
            "content_sha256": sha256_text(content),
            # The calls as returned (canonical JSON of their list), when the answer made any.
            "tool_calls_sha256": (
                hashlib.sha256(rfc8785.dumps(tool_calls)).hexdigest() if tool_calls else None
            ),
            "finish_reason": finish_reason,
            "usage": usage,
            "watermark": watermark,
        }
        return self.sign_payload(payload)

    def sign_payload(self, payload: dict[str, Any]) -> str:
        header = {"alg": ALGORITHM, "kid": self.keys.kid, "typ": "wardgate-receipt+jws"}
        token: str = jws.serialize_compact(
            header, rfc8785.dumps(payload), self.keys.active, algorithms=[ALGORITHM]
        )
        return token


@dataclass(frozen=True)
class VerifiedReceipt:
    payload: dict[str, Any]
    kid: str
    #: True when content was given and its digest matched; None when none was given.
    content_matches: bool | None


def verify_receipt(receipt: str, keys: KeySet, *, content: str | None = None) -> VerifiedReceipt:
    """Check a receipt's signature against ``keys`` and, given ``content``, its digest.

    Raises :class:`ReceiptInvalid` with code ``receipt_malformed``, ``receipt_unknown_key``,
    ``receipt_bad_signature`` or ``receipt_content_mismatch``.
    """
    token = receipt.strip()
    try:
        header = json.loads(_b64url(token.split(".")[0]))
        kid = header["kid"]
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise ValueError("algorithm or key id")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ReceiptInvalid("not a Wardgate receipt (JWS)", code="receipt_malformed") from exc
    key = next((k for k in keys.keys if k.thumbprint() == kid), None)
    if key is None:
        raise ReceiptInvalid(
            f"the receipt was signed by key {kid[:64]!r}, which is not among the published keys",
            code="receipt_unknown_key",
        )
    try:
        obj = jws.deserialize_compact(token, key, algorithms=[ALGORITHM])
    except JoseError as exc:
        raise ReceiptInvalid(
            "the receipt's signature does not verify", code="receipt_bad_signature"
        ) from exc
    try:
        payload = json.loads(obj.payload)
    except ValueError as exc:
        raise ReceiptInvalid("the receipt's payload is not JSON", code="receipt_malformed") from exc
    if not isinstance(payload, dict) or payload.get("kid") != kid:
        raise ReceiptInvalid(
            "the payload's key id differs from the header's", code="receipt_malformed"
        )
    matches: bool | None = None
    if content is not None:
        matches = hmac.compare_digest(sha256_text(content), str(payload.get("content_sha256")))
        if not matches:
            raise ReceiptInvalid(
                "the content's SHA-256 differs from the one the receipt signs",
                code="receipt_content_mismatch",
            )
    return VerifiedReceipt(payload=payload, kid=kid, content_matches=matches)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
