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
from functools import cached_property
from typing import Any

import orjson
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
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


#: The integers JSON (IEEE 754 doubles) holds exactly; RFC 8785 refuses the others.
_SAFE_INT = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) canonical JSON of ``value``, byte for byte what ``rfc8785.dumps``
    gives, about 30 times faster for what receipts sign.

    orjson with sorted keys writes the same bytes for JSON made of strings, safe integers,
    booleans, null, lists and objects with ASCII keys: it escapes exactly what JCS escapes,
    the same way (tests/provenance compares every code point). Anything else goes to the
    ``rfc8785`` package: floats (JCS formats them as ECMAScript does, orjson does not), keys
    beyond ASCII (JCS sorts by UTF-16 code units), unsafe integers and strings orjson refuses
    (lone surrogates), for which rfc8785 raises its own error.
    """
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return rfc8785.dumps(value)


#: Values :func:`_plain` looks at before it leaves the decision to the ``rfc8785`` package.
_PLAIN_LIMIT = 100_000


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON orjson writes exactly as JCS does (see canonical_json).

    One loop over a stack of the values still to look at, no call per value: a receipt's
    payload is a dozen scalars and two small objects. Beyond ``_PLAIN_LIMIT`` values (or a
    structure that contains itself) the answer is no: the ``rfc8785`` package decides."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    budget = _PLAIN_LIMIT
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -_SAFE_INT <= item <= _SAFE_INT:
                return False
            continue
        if kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
        elif kind is not list and kind is not tuple:
            return False
        budget -= len(item)
        if budget < 0:
            return False
        push(item.values() if kind is dict else item)
    return True


def _b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def messages_digest(messages: Sequence[tuple[str, str]]) -> str:
    """SHA-256 of the canonical (RFC 8785) JSON of the request's ``[{role, content}]``."""
    body = [{"role": role, "content": content} for role, content in messages]
    return hashlib.sha256(canonical_json(body)).hexdigest()


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
                hashlib.sha256(canonical_json(tool_calls)).hexdigest() if tool_calls else None
            ),
            "finish_reason": finish_reason,
            "usage": usage,
            "watermark": watermark,
        }
        return self.sign_payload(payload)

    def sign_payload(self, payload: dict[str, Any]) -> str:
        """The JWS compact serialisation (RFC 7515 §7.1) of ``payload``'s canonical JSON.

        Built here rather than by joserfc's ``serialize_compact``: the same bytes (the same
        header JSON; Ed25519 signatures are deterministic), without its per-call header
        checks and registry look-ups, which cost more than the signature.
        """
        signing_input = self._header_segment + b"." + _b64url_encode(canonical_json(payload))
        signature = self._private_key.sign(signing_input)
        return (signing_input + b"." + _b64url_encode(signature)).decode("ascii")

    @cached_property
    def _header_segment(self) -> bytes:
        header = {"alg": ALGORITHM, "kid": self.keys.kid, "typ": "wardgate-receipt+jws"}
        # As joserfc encodes a protected header (json.dumps, ASCII, no spaces).
        return _b64url_encode(json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode())

    @cached_property
    def _private_key(self) -> Ed25519PrivateKey:
        key = self.keys.active.private_key
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the active receipt key is not an Ed25519 private key")
        return key


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
