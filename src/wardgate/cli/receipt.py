"""``wardgate receipt``: verify a signed receipt offline, and make signing keys for rotation.

``verify`` exits 0 when the receipt (and, given ``--content``, the content) verifies, 1 when
it does not, 2 when the inputs cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from wardgate.cli.common import EXIT_CONFIG
from wardgate.cli.help import WardgateTyper
from wardgate.cli.keys import ConfigOption, JsonOption, load_cli_config
from wardgate.errors import ConfigError

receipt_app = WardgateTyper(
    help="Verify signed receipts offline; generate receipt signing keys.", no_args_is_help=True
)


def _read_arg(value: str) -> str:
    """A receipt given inline, as ``-`` (standard input) or as a file path."""
    if value == "-":
        return sys.stdin.read().strip()
    if value.count(".") == 2 and "/" not in value and len(value) > 64:
        return value.strip()
    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value.strip()


@receipt_app.command("verify")
def verify(
    receipt: Annotated[str, typer.Argument(help="The receipt (JWS), a file holding it, or -.")],
    content: Annotated[
        Path | None,
        typer.Option("--content", help="File with the answer's content; its SHA-256 must match."),
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help="JWKS file (saved from /.well-known/wardgate/keys); default: the config's keys.",
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Check a receipt's signature (and the content's digest) with no network access."""
    from wardgate.provenance.receipts import ReceiptInvalid, verify_receipt
    from wardgate.provenance.signing_keys import keyset_from_jwks, local_keyset

    try:
        if jwks is not None:
            keyset = keyset_from_jwks(orjson.loads(jwks.read_bytes()))
        else:
            cfg = load_cli_config(config)
            keyset = local_keyset(cfg.receipts, Path(cfg.auth.secret_file).expanduser().parent)
        text = content.read_bytes().decode("utf-8") if content is not None else None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    try:
        checked = verify_receipt(_read_arg(receipt), keyset, content=text)
    except ReceiptInvalid as exc:
        if as_json:
            typer.echo(orjson.dumps({"ok": False, "code": exc.code, "message": exc.message}))
        else:
            typer.echo(f"FAILED ({exc.code}): {exc.message}")
        raise typer.Exit(1) from exc
    if as_json:
        out = {
            "ok": True,
            "kid": checked.kid,
            "content_matches": checked.content_matches,
            "payload": checked.payload,
        }
        typer.echo(orjson.dumps(out).decode())
        return
    p = checked.payload
    weights = p.get("weights") or {}
    made_by = weights.get("sha256") or weights.get("upstream_model") or "unknown"
    typer.echo(f"ok: signed by key {checked.kid}")
    typer.echo(f"  answer {p.get('audit_request_id')} at {p.get('time')}")
    typer.echo(f"  model {p.get('model')} served by {p.get('backend')} ({made_by})")
    if checked.content_matches:
        typer.echo(f"  content sha256 {p.get('content_sha256')} matches")
    else:
        typer.echo("  content not checked (pass --content FILE)")


@receipt_app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the new private key (0600 PEM).")],
) -> None:
    """Make a new Ed25519 signing key for rotation (see docs/provenance.md)."""
    from joserfc.jwk import OKPKey

    from wardgate.provenance.signing_keys import write_private_key

    if not write_private_key(path):
        typer.echo(f"error: {path} exists; not overwriting a key", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {path}; key id {OKPKey.import_key(path.read_bytes()).thumbprint()}")
