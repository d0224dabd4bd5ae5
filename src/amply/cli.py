"""The ``amply`` command: serve, migrate, verify."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from amply.config import Settings, get_settings
from amply.embedded import DatabaseUrls, EmbeddedPostgres
from amply.lib.verify import ExportFormatError, verify_export_file

EXIT_OK, EXIT_BROKEN, EXIT_UNREADABLE = 0, 1, 2


@contextmanager
def database_urls(settings: Settings) -> Iterator[DatabaseUrls]:
    """The configured database, or the embedded one (started here, stopped on the way out)."""
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
    urls = embedded.start()
    logging.getLogger("amply").info("embedded PostgreSQL running in %s", settings.data_dir)
    try:
        yield urls
    finally:
        embedded.stop()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:  # also SIGHUP
    raise SystemExit(EXIT_OK)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from amply.main import create_app
    from amply.migrate import upgrade_to_head

    settings = get_settings()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal. Handled as
    # exceptions here, that signal unwinds through database_urls(), which stops the embedded
    # PostgreSQL cleanly instead of leaving it running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGHUP, _exit_on_sigterm)
    try:
        with database_urls(settings) as urls:
            upgrade_to_head(urls.migration)
            app = create_app(settings, database_url=urls.app)
            uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _migrate(_: argparse.Namespace) -> int:
    from amply.migrate import head_revision, upgrade_to_head

    with database_urls(get_settings()) as urls:
        upgrade_to_head(urls.migration)
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    try:
        result = verify_export_file(Path(args.file))
    except ExportFormatError as error:
        if args.json:
            print(json.dumps({"ok": False, "error": str(error)}))
        else:
            print(f"UNREADABLE: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(json.dumps(result.as_dict()) if args.json else result.verdict())
    return EXIT_OK if result.ok else EXIT_BROKEN


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amply", description="Transparent donations on a hash-chained ledger."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="migrate the database, then serve the API (embedded PostgreSQL by default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema to the newest one")
    migrate.set_defaults(handler=_migrate)

    verify = commands.add_parser(
        "verify",
        help="verify an exported ledger file offline (exit 0 valid, 1 broken, 2 unreadable)",
    )
    verify.add_argument("file", help="a ledger export (JSON, docs/ledger-format.md §4)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
