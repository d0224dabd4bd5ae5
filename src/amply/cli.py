"""The ``amply`` command: serve, migrate, verify, verify-receipt, keygen, keys, reconcile."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from amply.ledger.signing import NoteSigner
from amply.verify import (
    CheckpointError,
    ExportFormatError,
    VerifierKey,
    loads_strict,
    looks_like_key,
    read_export,
    verify_export_file,
    verify_extension_files,
    verify_receipt_file,
)

if TYPE_CHECKING:
    from amply.embedded import DatabaseUrls
    from amply.kit.settings import Settings

# serve and migrate import the server's modules when they run: `amply verify` starts quickly.
EXIT_OK, EXIT_BROKEN, EXIT_UNREADABLE = 0, 1, 2


@contextmanager
def database_urls(settings: Settings) -> Iterator[DatabaseUrls]:
    """The configured database, or the embedded one (started here, stopped on the way out)."""
    from amply.embedded import DatabaseUrls, EmbeddedPostgres, EmbeddedPostgresError

    if settings.database_url is not None:
        app_url = settings.database_url.get_secret_value()
        migration = settings.database_migration_url
        if migration is None and settings.environment == "production":
            raise SystemExit(
                "AMPLY_ENVIRONMENT=production needs DATABASE_MIGRATION_URL (the schema owner) "
                "besides DATABASE_URL (amply_app): see docs/operations.md."
            )
        yield DatabaseUrls(
            app=app_url, migration=migration.get_secret_value() if migration else app_url
        )
        return
    if settings.environment == "production":
        raise SystemExit("AMPLY_ENVIRONMENT=production needs DATABASE_URL (an external server).")
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        urls = embedded.start()
    except EmbeddedPostgresError as error:  # says what is wrong and what to do: no traceback
        raise SystemExit(f"amply: {error}") from None
    logging.getLogger("amply").info("embedded PostgreSQL running in %s", settings.data_dir)
    try:
        yield urls
    finally:
        embedded.stop()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:  # also SIGHUP
    raise SystemExit(EXIT_OK)


def _serve(args: argparse.Namespace) -> int:
    from amply.kit.observability import configure_logging, json_logs
    from amply.kit.settings import get_settings
    from amply.startup import StartupError, check_port, check_urls

    settings = get_settings()
    # Before the imports below: Alembic logs as it loads, and those lines must be JSON too.
    configure_logging(level=settings.log_level, json_lines=json_logs(settings))

    # Mistakes are found before any database is started or migrated: the URLs, the port,
    # then each configured database (reachable, password, PostgreSQL 15+).
    try:
        check_urls(settings)
        check_port(args.host, args.port)
        _check_databases(settings)
    except StartupError as error:
        return _startup_failed(error)

    import uvicorn

    from amply.main import create_app
    from amply.migrate import upgrade_to_head

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal. Handled as
    # exceptions here, that signal unwinds through database_urls(), which stops the embedded
    # PostgreSQL cleanly instead of leaving it running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGHUP, _exit_on_sigterm)
    options = uvicorn_options(args, settings)
    try:
        with database_urls(settings) as urls:
            upgrade_to_head(urls.migration)
            _install_signing_key(settings, owner_url=urls.migration)
            _announce(args.host, args.port)
            if args.workers <= 1:
                uvicorn.run(create_app(settings, database_url=urls.app), **options)
            else:
                _serve_workers(settings, urls=urls, workers=args.workers, options=options)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# A mistake in how Amply was started (a setting, the port): said in a line or two, no trace.
EXIT_STARTUP = 3


def _startup_failed(error: Exception) -> int:
    print(f"amply: {error}", file=sys.stderr)
    return EXIT_STARTUP


def _check_databases(settings: Settings) -> None:
    """Each configured external database answers, takes its password, and is new enough."""
    from amply.startup import check_database, configured_urls

    for setting, url in configured_urls(settings).items():
        check_database(url, setting=setting)


def _announce(host: str, port: int) -> None:
    """The line that says where to go, as the server starts."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # noqa: S104
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    base = f"http://{shown}:{port}"
    logging.getLogger("amply").info("Amply is starting on %s: API docs at %s/docs", base, base)


def uvicorn_options(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """How ``amply serve`` runs uvicorn."""
    return {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "log_config": None,  # configure_logging() routes uvicorn's loggers
        "access_log": False,  # the app logs one structured line per request itself
        "timeout_graceful_shutdown": args.graceful_timeout,
        # Who the client is: the TCP peer, unless the app trusts that peer as a proxy
        # (AMPLY_TRUSTED_PROXIES, amply.main). uvicorn's own default would trust
        # X-Forwarded-For from any loopback peer (FORWARDED_ALLOW_IPS=127.0.0.1).
        "proxy_headers": False,
    }


def _serve_workers(
    settings: Settings, *, urls: DatabaseUrls, workers: int, options: dict[str, Any]
) -> None:
    """Serve with several worker processes (uvicorn's supervisor restarts any that die).

    Each worker builds its own app (``amply.main:worker_app``) on the database this process
    started or was given; the checkpoint key is loaded (or generated) here first, so that
    workers never race to create it; and Prometheus metrics are shared through a directory
    of this run, so that ``/metrics`` on any worker adds up all of them.
    """
    import uvicorn

    from amply.ledger.checkpoints import load_signer
    from amply.main import WORKER_DATABASE_URL

    load_signer(settings)
    with tempfile.TemporaryDirectory(prefix="amply-metrics-") as metrics_dir:
        os.environ[WORKER_DATABASE_URL] = urls.app
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("amply.main:worker_app", factory=True, workers=workers, **options)


def _demo(_: argparse.Namespace) -> int:
    from amply.demo import DemoRefused, run_demo
    from amply.kit.settings import get_settings
    from amply.migrate import upgrade_to_head
    from amply.startup import StartupError, check_urls

    settings = get_settings()
    # One line per request would bury the summary: only warnings from the requests it makes.
    for name in ("httpx", "amply.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        check_urls(settings)
        with database_urls(settings) as urls:
            _check_databases(settings)
            upgrade_to_head(urls.migration)
            _install_signing_key(settings, owner_url=urls.migration)
            demo = run_demo(settings, database_url=urls.app)
    except (StartupError, DemoRefused) as error:
        return _startup_failed(error)
    print(demo.summary())
    return EXIT_OK if not demo.broken else EXIT_BROKEN


def _migrate(_: argparse.Namespace) -> int:
    from amply.kit.settings import get_settings
    from amply.migrate import head_revision, upgrade_to_head

    settings = get_settings()
    with database_urls(settings) as urls:
        upgrade_to_head(urls.migration)
        _install_signing_key(settings, owner_url=urls.migration)
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def _reconcile(args: argparse.Namespace) -> int:
    """Compare chains with Stripe's balance transactions: 0 agree, 1 differ, 2 could not."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from amply.kit.db import Database
    from amply.kit.settings import get_settings
    from amply.webhooks import reconciliation

    settings = get_settings()

    async def run(url: str) -> list[reconciliation.Report]:
        database = Database(url, pool_size=2, max_overflow=0)
        try:
            source = reconciliation.balance_source(settings, database)
            return await reconciliation.reconcile(
                database, source=source, organisation_id=args.organisation
            )
        finally:
            await database.dispose()

    try:
        with database_urls(settings) as urls:
            reports = asyncio.run(run(urls.app))
    except LookupError as error:
        print(f"amply: {error.args[0]}", file=sys.stderr)
        return EXIT_UNREADABLE
    except (OSError, SQLAlchemyError, reconciliation.ReconciliationUnavailable) as error:
        print(f"amply: could not reconcile: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    for report in reports:
        if report.error is not None:
            print(f"amply: {report.organisation_id}: {report.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([_report_json(report) for report in reports], indent=2))
    else:
        print(reconciliation.table(reports))
        differences = sum(len(report.differences) for report in reports)
        print(
            f"{len(reports)} organisations reconciled, {differences} differences",
            file=sys.stderr,
        )
    if any(report.error is not None for report in reports):
        return EXIT_UNREADABLE
    return EXIT_BROKEN if any(report.differences for report in reports) else EXIT_OK


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "organisation_id": report.organisation_id,
        "account_id": report.account_id,
        "balance_transactions": report.balance_transactions,
        "entries": report.entries,
        "error": report.error,
        "differences": [
            {
                "kind": d.kind,
                "group": d.group,
                "currency": d.currency,
                "stripe": d.stripe,
                "chain": d.chain,
            }
            for d in report.differences
        ],
    }


def _install_signing_key(settings: Settings, *, owner_url: str) -> None:
    """Make the configured checkpoint key the active one, as the schema owner (the service
    role may not: migration 0007)."""
    from amply.ledger.checkpoints import load_signer
    from amply.ledger.key_custody import KeyCustodyError, install_key

    key = load_signer(settings).verifier_key
    try:
        installed = install_key(owner_url, key)
    except KeyCustodyError as error:
        raise SystemExit(f"amply: {error}") from error
    if installed:
        logging.getLogger("amply").info("installed the checkpoint signing key %s", key.encode())


def _keys_command(args: argparse.Namespace) -> int:
    from amply.kit.settings import get_settings
    from amply.ledger.key_custody import KeyCustodyError, revoke_key

    settings = get_settings()
    try:
        with database_urls(settings) as urls:
            if args.keys_command == "install":
                _install_signing_key(settings, owner_url=urls.migration)
                print(f"active checkpoint key: {_configured_key(settings)}")
            else:
                revoke_key(urls.migration, VerifierKey.parse(args.key))
                print(f"revoked: {args.key}")
    except (KeyCustodyError, CheckpointError) as error:
        print(f"amply: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK


def _configured_key(settings: Settings) -> str:
    from amply.ledger.checkpoints import load_signer

    return load_signer(settings).verifier_key.encode()


class _Outcome(Protocol):
    ok: bool

    def verdict(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


def _verify(args: argparse.Namespace) -> int:
    def check(progress: ProgressBar, keys: list[VerifierKey]) -> _Outcome:
        files = [Path(file) for file in args.files]
        if len(files) > 2:
            raise ExportFormatError("give one export, or two: OLD NEW")
        # A long chain is checked in two processes when there are cores for it.
        workers = os.cpu_count() or 1
        progress.reading(files[-1])
        if len(files) == 1:
            return verify_export_file(
                files[0], keys=keys, progress=progress.entries, workers=workers
            )
        return verify_extension_files(*files, keys=keys, progress=progress.entries, workers=workers)

    return _report(args, check)


def _verify_receipt(args: argparse.Namespace) -> int:
    def check(progress: ProgressBar, keys: list[VerifierKey]) -> _Outcome:
        receipt = read_export(Path(args.receipt))
        progress.reading(Path(args.export))
        return verify_receipt_file(
            receipt,
            Path(args.export),
            keys=keys,
            progress=progress.entries,
            workers=os.cpu_count() or 1,
        )

    return _report(args, check)


def _report(
    args: argparse.Namespace, check: Callable[[ProgressBar, list[VerifierKey]], _Outcome]
) -> int:
    """Run a check; print its verdict (or JSON) and return the exit status: 0 it holds,
    1 broken, 2 unreadable (docs/ledger-format.md §4.2)."""
    progress = _progress_bar(args.progress)
    try:
        result = check(progress, _keys(args.key))
    except (ExportFormatError, CheckpointError) as error:
        progress.done()
        return _unreadable(error, as_json=args.json)
    progress.done()
    _say(json.dumps(result.as_dict()) if args.json else result.verdict(), sys.stdout)
    return EXIT_OK if result.ok else EXIT_BROKEN


def _say(line: str, stream: Any) -> None:
    """One line, whatever it holds: never a traceback for a character the terminal lacks."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    text = " ".join(line.splitlines()).encode(encoding, "backslashreplace").decode(encoding)
    print(text, file=stream)


def _unreadable(error: Exception, *, as_json: bool) -> int:
    if as_json:
        _say(json.dumps({"ok": False, "error": str(error)}), sys.stdout)
    else:
        _say(f"UNREADABLE: {error}", sys.stderr)
    return EXIT_UNREADABLE


def _read(path: Path, *, progress: ProgressBar) -> dict[str, Any]:
    progress.reading(path)
    return read_export(path)


def _keys(values: Sequence[str]) -> list[VerifierKey]:
    """``--key`` values (docs/ledger-format.md §4.2): a value shaped like a verifier key
    (``name+8 hex digits+base64``, the name without ``/``) is one; anything else names a file
    of them, one per line, or the JSON of ``GET /v1/public/keys``."""
    keys: list[VerifierKey] = []
    for value in values:
        if looks_like_key(value):
            keys.append(VerifierKey.parse(value))
            continue
        path = Path(value)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CheckpointError(
                f"--key {value!r} is neither a verifier key nor a readable file ({error.strerror})"
            ) from error
        if data.lstrip(b" \t\r\n")[:1] == b"{":
            document = loads_strict(data, what=f"the keys file {path}")
            items = document.get("data") if isinstance(document, dict) else None
            if not isinstance(items, list):
                raise CheckpointError(f"{path}: a keys document's data is an array of keys")
            listed = _listed_keys(items)
        else:
            try:
                lines = data.decode("utf-8").splitlines()
            except UnicodeDecodeError as error:
                raise CheckpointError(f"the keys file {path} is not UTF-8") from error
            listed = [VerifierKey.parse(line) for line in lines if line.strip()]
        if not listed:
            raise CheckpointError(f"{path} holds no verifier key that vouches for anything")
        keys.extend(listed)
    return keys


_STATUSES = ("active", "retired", "revoked")


def _listed_keys(items: list[Any]) -> list[VerifierKey]:
    """The keys of ``GET /v1/public/keys`` as their status says to trust them: active ones
    for any checkpoint, retired ones for those before they retired, revoked ones not at all
    (docs/ledger-format.md §6.3). Only ``data[].key``, ``status`` and ``retired_at`` count;
    a malformed item makes the whole document unreadable, whatever its status."""
    keys = []
    for item in items:
        if not isinstance(item, dict) or type(item.get("key")) is not str:
            raise CheckpointError("each item of a keys document has a key string")
        status = item.get("status", "active")  # lists served before keys had statuses
        if status not in _STATUSES:
            raise CheckpointError(f"unknown key status {status!r}: active, retired or revoked")
        key = VerifierKey.parse(item["key"])
        if status == "revoked":
            continue
        retired_at = item.get("retired_at")
        if status == "retired" and retired_at is not None:
            if type(retired_at) is not str or not _is_instant(retired_at):
                raise CheckpointError(f"retired_at {retired_at!r} is not an RFC 3339 time")
            # Lists served before key custody (migration 0007) have no retired_at.
            key = replace(key, retired_at=retired_at)
        keys.append(key)
    return keys


def _is_instant(text: str) -> bool:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


class ProgressBar:
    """Progress on standard error, for files big enough to wait for (or when asked)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def reading(self, path: Path) -> None:
        if self.enabled:
            try:
                size = path.stat().st_size if path.is_file() else 0
            except OSError:
                size = 0
            self._show(f"reading {path.name} ({size / 1e6:,.1f} MB)")

    def entries(self, checked: int, total: int) -> None:
        if not self.enabled:
            return
        if total:
            filled = min(checked, total) * 30 // total
            bar = "#" * filled + "-" * (30 - filled)
            self._show(f"verifying [{bar}] {checked:,}/{total:,} entries")
        else:
            self._show(f"verifying {checked:,} entries")

    def _show(self, line: str) -> None:
        sys.stderr.write(f"\r\033[K{line.encode('ascii', 'backslashreplace').decode()}")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            self.shown = False


def _progress_bar(choice: bool | None) -> ProgressBar:
    # By default, only when a person is watching a terminal.
    return ProgressBar(enabled=sys.stderr.isatty() if choice is None else choice)


def _keygen(args: argparse.Namespace) -> int:
    signer = NoteSigner.generate(args.name)
    print(f"signer key (secret: AMPLY_CHECKPOINT_SIGNING_KEY): {signer.encode()}")
    print(f"verifier key (public):                           {signer.verifier_key.encode()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from amply import __version__

    parser = argparse.ArgumentParser(
        prog="amply", description="Transparent donations on a hash-chained ledger."
    )
    parser.add_argument("--version", action="version", version=f"amply {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="fill the database (embedded by default) with a demo: organisations, donations, "
        "refunds, a dispute, funds, wallets, transfers, requests and gifts (sandbox mode)",
    )
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser(
        "serve", help="migrate the database, then serve the API (embedded PostgreSQL by default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each with its own connection pool (default 1)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds to let requests in flight finish (default 30)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema to the newest one")
    migrate.set_defaults(handler=_migrate)

    verify = commands.add_parser(
        "verify",
        help="verify a ledger export offline, or that a newer one extends an older one "
        "(exit 0 valid, 1 broken, 2 unreadable)",
        description="Check every hash, link, sequence number and balance of an export, and "
        "its signed checkpoint. With two files, also check that NEW extends OLD: no history "
        "was rewritten between the two downloads.",
    )
    verify.add_argument(
        "files", nargs="+", metavar="EXPORT", help="EXPORT, or OLD NEW (docs/ledger-format.md)"
    )
    _common_verify_options(verify)
    verify.set_defaults(handler=_verify)

    receipt = commands.add_parser(
        "verify-receipt",
        help="check a donor's receipt against an export of the organisation's ledger",
    )
    receipt.add_argument("receipt", help="the receipt (GET /v1/donations/{id}/receipt)")
    receipt.add_argument("export", help="an export of the organisation's ledger")
    _common_verify_options(receipt)
    receipt.set_defaults(handler=_verify_receipt)

    keygen = commands.add_parser("keygen", help="make a checkpoint signing key")
    keygen.add_argument("--name", required=True, help="the key's name: the public host name")
    keygen.set_defaults(handler=_keygen)

    keys = commands.add_parser(
        "keys",
        help="install or revoke checkpoint signing keys, as the schema owner "
        "(DATABASE_MIGRATION_URL)",
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_commands.add_parser(
        "install",
        help="make the configured key (AMPLY_CHECKPOINT_SIGNING_KEY[_FILE]) the active one, "
        "retiring the one before (amply serve and amply migrate do this too)",
    )
    revoke = keys_commands.add_parser(
        "revoke", help="revoke a key: verifiers trust none of its checkpoints any more"
    )
    revoke.add_argument("key", help="the verifier key, as GET /v1/public/keys lists it")
    keys.set_defaults(handler=_keys_command)

    reconcile = commands.add_parser(
        "reconcile",
        help="compare each organisation's chain with its Stripe balance transactions (the "
        "sandbox's in sandbox mode) and print every difference (exit 0 agree, 1 differ, "
        "2 could not ask)",
        description="Group Stripe's balance transactions by the charge or payout they belong "
        "to and compare each group's gross and fee with the chain entries that name it "
        "(docs/donations.md, Reconciliation).",
    )
    reconcile.add_argument(
        "organisation", nargs="?", metavar="ORG", help="one organisation's id (default: all)"
    )
    reconcile.add_argument("--json", action="store_true", help="print the reports as JSON")
    reconcile.set_defaults(handler=_reconcile)
    return parser


def _common_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help="trust only checkpoints signed by this key: a verifier key (name+id+key), or a "
        "file of them, such as the JSON of GET /v1/public/keys. Repeatable.",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on standard error (default: when it is a terminal)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
