"""``wardgate model …``: hash, sign, verify, scan, audit, encrypt, decrypt and BOM for weights.

A thin layer over :mod:`wardgate.supplychain`. Exit codes are the contract for CI:
0 clean / verified, 1 findings / verification failed, 2 error (missing, corrupt or truncated
input, bad arguments), 3 unscanned (``scan`` met a format it does not know: not clean).
Human tables by default, ``--json`` for machines. Every command that writes a file writes it
atomically, so a failure never leaves a partial output.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from wardgate.cli.help import WardgateTyper

model_app = WardgateTyper(
    name="model",
    help="Model supply chain: hash, sign, verify, scan, encrypt weights, ML-BOM.",
    no_args_is_help=True,
    add_completion=False,
)

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
EXIT_UNSCANNED = 3

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(message: str, as_json: bool = False, code: int = EXIT_ERROR) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message}))
    else:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _table(*headers: str) -> Table:
    """A table whose cells wrap (long words fold) at any width, so no column is ever cut."""
    table = Table(*headers)
    for column in table.columns:
        column.overflow = "fold"
    return table


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def _exists(path: Path, as_json: bool) -> None:
    if not path.exists():
        _fail(f"no such file or folder: {path}", as_json)


@model_app.command("hash")
def hash_cmd(
    path: Annotated[Path, typer.Argument(help="Model file or folder.")],
    workers: Annotated[int | None, typer.Option(help="Parallel hashing threads.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """SHA-256 per file and the model-signing root digest, hashed in parallel."""
    import time

    from wardgate.supplychain.hashing import hash_model

    _exists(path, as_json)
    start = time.perf_counter()
    try:
        digest = hash_model(path, max_workers=workers)
    except (OSError, ValueError) as exc:
        _fail(str(exc), as_json)
    seconds = time.perf_counter() - start
    if as_json:
        _emit({**digest.to_dict(), "seconds": round(seconds, 3)})
        return
    console = _out()
    # sha256sum's layout (digest, two spaces, name) plus the size: lines wrap in a narrow
    # terminal instead of a table squeezing the names into a one-letter column.
    for item in digest.files:
        console.print(f"{item.sha256}  {item.size:>15,}  {item.name}")
    rate = digest.total_bytes / seconds / 1e9 if seconds else 0.0
    console.print(
        f"model-signing root digest {digest.root}\n"
        f"{len(digest.files)} file(s), {digest.total_bytes:,} bytes in {seconds:.2f} s "
        f"({rate:.2f} GB/s)"
    )


@model_app.command("keygen")
def keygen_cmd(
    private_key: Annotated[Path, typer.Argument(help="Where to write the EC P-256 private key.")],
    public_key: Annotated[Path, typer.Argument(help="Where to write the public key.")],
    password_env: Annotated[
        str | None, typer.Option(help="Encrypt the private key with the password in this env var.")
    ] = None,
) -> None:
    """Create an EC P-256 signing key pair (private key 0600)."""
    from wardgate.supplychain.signing import generate_key_pair

    password = os.environ.get(password_env) if password_env else None
    if password_env and not password:
        _fail(f"environment variable {password_env} is not set")
    if private_key.exists() or public_key.exists():
        _fail("refusing to overwrite an existing key file")
    generate_key_pair(private_key, public_key, password)
    _out().print(f"wrote {private_key} (0600) and {public_key}")


@model_app.command("sign")
def sign_cmd(
    path: Annotated[Path, typer.Argument(help="Model file or folder.")],
    signature: Annotated[Path, typer.Option("--signature", "-o", help="Signature to write.")],
    key: Annotated[Path | None, typer.Option("--key", help="EC private key (PEM).")] = None,
    certificate: Annotated[
        Path | None, typer.Option("--certificate", help="Signing certificate for --key.")
    ] = None,
    chain: Annotated[
        list[Path] | None, typer.Option("--chain", help="Certificate chain (repeatable).")
    ] = None,
    sigstore: Annotated[
        bool, typer.Option(help="Keyless Sigstore signing (needs network).")
    ] = False,
    identity_token_env: Annotated[
        str | None, typer.Option(help="Env var with an OIDC token for --sigstore (CI).")
    ] = None,
    password_env: Annotated[str | None, typer.Option(help="Env var with the key password.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign in the OpenSSF model-signing format (in-toto statement in a Sigstore bundle)."""
    from wardgate.supplychain.signing import SigningError, sign_model

    _exists(path, as_json)
    password = os.environ.get(password_env) if password_env else None
    try:
        sign_model(
            path,
            signature,
            private_key=key,
            password=password,
            certificate=certificate,
            certificate_chain=chain or [],
            sigstore=sigstore,
            identity_token=os.environ.get(identity_token_env) if identity_token_env else None,
        )
    except SigningError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit({"ok": True, "model": str(path), "signature": str(signature)})
    else:
        _out().print(f"signed {path} -> {signature}")


@model_app.command("verify")
def verify_cmd(
    path: Annotated[Path, typer.Argument(help="Model file or folder.")],
    signature: Annotated[
        Path | None, typer.Option("--signature", "-s", help="Signature file to check.")
    ] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Trusted key.")] = None,
    chain: Annotated[list[Path] | None, typer.Option("--chain", help="Trusted CA certs.")] = None,
    identity: Annotated[str | None, typer.Option(help="Sigstore signer identity.")] = None,
    issuer: Annotated[str | None, typer.Option(help="Sigstore OIDC issuer.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Pinned digest (file sha256 or root).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a signature against a trusted key/chain/identity, and/or a pinned digest."""
    from wardgate.errors import ModelVerificationFailed
    from wardgate.supplychain.hashing import digests_equal, hash_model
    from wardgate.supplychain.signing import verify_model

    _exists(path, as_json)
    if signature is None and sha256 is None:
        _fail("give --signature (with a trust anchor) and/or --sha256", as_json)
    checks: list[dict[str, Any]] = []
    ok = True
    if sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
            _fail("--sha256 takes 64 hex digits (as `wardgate model hash` prints)", as_json)
        digest = hash_model(path)
        # A single file is pinned by its own sha256 (what sha256sum prints) or by the root
        # digest `wardgate model hash --json` prints at the top level; a folder by the root.
        got = digest.files[0].sha256 if path.is_file() else digest.root
        match = any(digests_equal(c, sha256.strip()) for c in (got, digest.root))
        ok &= match
        check: dict[str, Any] = {"check": "sha256", "ok": match, "expected": sha256.lower()}
        check["actual"] = got
        if path.is_file():
            check["actual_root"] = digest.root
        checks.append(check)
    if signature is not None:
        if not signature.is_file():
            _fail(f"signature file not found: {signature}", as_json)
        try:
            result = verify_model(
                path,
                signature,
                public_key=public_key,
                certificate_chain=chain or [],
                sigstore_identity=identity,
                sigstore_issuer=issuer,
            )
            checks.append({"check": "signature", "ok": True, "method": result.method})
        except ModelVerificationFailed as exc:
            ok = False
            checks.append({"check": "signature", "ok": False, "reason": exc.message})
    if as_json:
        _emit({"ok": ok, "model": str(path), "checks": checks})
    else:
        console = _out()
        for check in checks:
            mark = "[green]OK[/]" if check["ok"] else "[bold red]FAILED[/]"
            if check["check"] == "sha256" and not check["ok"]:
                root = f" (root digest {check['actual_root']})" if "actual_root" in check else ""
                detail = f"expected {check['expected']}, actual {check['actual']}{root}"
            else:
                detail = check.get("reason") or check.get("method") or check.get("actual", "")
            console.print(f"{mark}  {check['check']}: {detail}")
    raise typer.Exit(EXIT_CLEAN if ok else EXIT_FINDINGS)


@model_app.command("scan")
def scan_cmd(
    path: Annotated[Path, typer.Argument(help="Model file or folder.")],
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Extra allowed module.qualname.")
    ] = None,
    allow_file: Annotated[Path | None, typer.Option(help="File of allowed globals.")] = None,
    template_sha256: Annotated[
        str | None, typer.Option(help="Known-good sha256 of the default chat template.")
    ] = None,
    inert_ext: Annotated[
        list[str] | None,
        typer.Option(
            "--inert-ext",
            help="Extension of text files that are inert (repeat; adds to .json .txt .md .yaml).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Scan for unsafe serialisation (pickle, Keras, SavedModel, ONNX, GGUF templates).

    Exit 0 clean, 1 findings, 2 unreadable input, 3 unscanned (unknown format, encrypted
    file, empty folder): what was not read is never reported clean."""
    from wardgate.supplychain.allowlist import default_allowlist, load_allowlist_file
    from wardgate.supplychain.formats import DEFAULT_INERT_EXTENSIONS
    from wardgate.supplychain.scan import ScanOptions, scan_path

    _exists(path, as_json)
    extra = set(allow or [])
    if allow_file is not None:
        try:
            extra |= load_allowlist_file(str(allow_file))
        except OSError as exc:
            _fail(f"cannot read allow-list file: {exc}", as_json)
    inert = {e if e.startswith(".") else f".{e}" for e in inert_ext or []}
    options = ScanOptions(
        allowlist=default_allowlist(extra),
        pinned_templates={"default": template_sha256} if template_sha256 else {},
        inert_extensions=DEFAULT_INERT_EXTENSIONS | inert,
    )
    try:
        report = scan_path(path, options)
    except OSError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit(report.to_dict())
    else:
        console = _out()
        if report.findings:
            table = _table("severity", "code", "where", "message")
            for finding in sorted(report.findings, key=lambda f: -f.severity):
                table.add_row(
                    str(finding.severity), finding.code, finding.location, finding.message
                )
            console.print(table)
        for where in report.unscanned:
            console.print(f"[yellow]not scanned:[/] {where}")
        formats = ", ".join(sorted(set(report.formats))) or "-"
        verdict = {
            "clean": "[green]clean[/]",
            "findings": "[bold red]NOT SAFE[/]",
            "error": "[bold red]NOT SAFE[/]",
            "unscanned": "[bold yellow]UNSCANNED[/]",
        }[report.status]
        console.print(
            f"{verdict}: {report.files_scanned} file(s), formats: {formats}, "
            f"{len(report.findings)} finding(s), {len(report.errors)} error(s), "
            f"{len(report.unscanned)} not scanned"
        )
    if report.errors:
        raise typer.Exit(EXIT_ERROR)
    exits = {"clean": EXIT_CLEAN, "findings": EXIT_FINDINGS, "unscanned": EXIT_UNSCANNED}
    raise typer.Exit(exits.get(report.status, EXIT_ERROR))


@model_app.command("audit-template")
def audit_template_cmd(
    path: Annotated[Path, typer.Argument(help="GGUF file, or a text file holding a template.")],
    pin: Annotated[str | None, typer.Option(help="Known-good sha256 of the template.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Audit GGUF chat templates (all named variants) for injection and backdoors."""
    from wardgate.supplychain.gguf_meta import GGUFFormatError, read_metadata_file
    from wardgate.supplychain.gguf_template import audit_templates

    _exists(path, as_json)
    with open(path, "rb") as handle:
        is_gguf = handle.read(4) == b"GGUF"
    try:
        templates = (
            read_metadata_file(str(path)).chat_templates()
            if is_gguf
            else {"default": path.read_text(encoding="utf-8")}
        )
    except (GGUFFormatError, UnicodeDecodeError, OSError) as exc:
        _fail(f"cannot read {path}: {exc}", as_json)
    audits = audit_templates(templates, location=path.name, pinned={"default": pin} if pin else {})
    findings = [f for a in audits for f in a.findings]
    if as_json:
        _emit(
            {
                "templates": [
                    {
                        "name": a.name,
                        "sha256": a.sha256,
                        "findings": [f.to_dict() for f in a.findings],
                    }
                    for a in audits
                ],
                "clean": not findings,
            }
        )
    else:
        console = _out()
        for audit in audits:
            console.print(f"template [bold]{audit.name}[/] sha256 {audit.sha256}")
            for f in audit.findings:
                console.print(f"  [red]{f.severity}[/] {f.code}: {f.message}")
        if not audits:
            console.print("no chat template in this file")
    raise typer.Exit(EXIT_FINDINGS if findings else EXIT_CLEAN)


def _key(key_file: Path | None, key_env: str | None) -> bytes:
    from wardgate.supplychain.encryption import EncryptionError, load_key

    try:
        return load_key(key_file=key_file, key_env=key_env)
    except EncryptionError as exc:
        _fail(str(exc))


KeyFileOpt = Annotated[Path | None, typer.Option("--key-file", help="32-byte key (raw/hex/b64).")]
KeyEnvOpt = Annotated[str | None, typer.Option("--key-env", help="Env var holding the key.")]


@model_app.command("gen-key")
def gen_key_cmd(output: Annotated[Path, typer.Argument(help="Key file to create (0600).")]) -> None:
    """Create a random AES-256 key file (hex, mode 0600) for encrypt/decrypt."""
    from wardgate.supplychain.encryption import generate_key
    from wardgate.supplychain.signing import atomic_write

    if output.exists():
        _fail(f"refusing to overwrite {output}")
    atomic_write(output, generate_key().hex().encode() + b"\n", mode=0o600)
    _out().print(f"wrote {output} (0600)")


@model_app.command("encrypt")
def encrypt_cmd(
    source: Annotated[Path, typer.Argument(help="Plaintext weights.")],
    target: Annotated[Path, typer.Argument(help="Encrypted output (written atomically).")],
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
    chunk_size: Annotated[int, typer.Option(help="Plaintext bytes per chunk.")] = 1024 * 1024,
) -> None:
    """Encrypt weights with AES-256-GCM in authenticated chunks."""
    from wardgate.supplychain.encryption import EncryptionError, encrypt_file

    _exists(source, False)
    try:
        encrypt_file(source, target, _key(key_file, key_env), chunk_size)
    except (EncryptionError, OSError) as exc:
        _fail(str(exc))
    _out().print(f"encrypted {source} -> {target}")


@model_app.command("decrypt")
def decrypt_cmd(
    source: Annotated[Path, typer.Argument(help="Encrypted weights.")],
    target: Annotated[Path, typer.Argument(help="Plaintext output (only if it authenticates).")],
    key_file: KeyFileOpt = None,
    key_env: KeyEnvOpt = None,
) -> None:
    """Decrypt and authenticate; tampered or truncated input writes nothing."""
    from wardgate.supplychain.encryption import EncryptionError, decrypt_file

    _exists(source, False)
    try:
        decrypt_file(source, target, _key(key_file, key_env))
    except EncryptionError as exc:
        _fail(str(exc), code=EXIT_FINDINGS)
    except OSError as exc:
        _fail(str(exc))
    _out().print(f"decrypted {source} -> {target}")


@model_app.command("bom")
def bom_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config (default: embedded).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """CycloneDX 1.6 ML-BOM of the configured models."""
    from wardgate.config import load_config
    from wardgate.errors import ConfigError
    from wardgate.supplychain.bom import build_bom
    from wardgate.supplychain.signing import atomic_write

    try:
        bom = build_bom(load_config(config))
    except ConfigError as exc:
        _fail(exc.message, as_json)
    text = json.dumps(bom, indent=2)
    if output is not None:
        atomic_write(output, text.encode() + b"\n")
    if as_json or output is None:
        typer.echo(text)
    refused = [
        c["name"]
        for c in bom["components"]
        for p in c.get("properties", [])
        if p["name"] == "wardgate:load" and p["value"].startswith("refused")
    ]
    if not as_json and output is not None:
        console = _out()
        table = _table("model", "sha256", "format", "quant", "signature", "scan")
        for comp in bom["components"]:
            props = {p["name"].split(":", 1)[1]: p["value"] for p in comp.get("properties", [])}
            digest = comp.get("hashes", [{"content": "-"}])[0]["content"]
            table.add_row(
                comp["name"],
                digest,
                props.get("format", "-"),
                props.get("quantization", "-"),
                props.get("signature", "-"),
                props.get("scan", "-"),
            )
        console.print(table)
        console.print(f"wrote {output}")
    raise typer.Exit(EXIT_FINDINGS if refused else EXIT_CLEAN)


def main() -> None:  # pragma: no cover - for `python -m wardgate.cli.model`
    model_app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(model_app())
