"""Command line: ``serve``, ``db-upgrade``, ``check-content``, ``adviser …``, ``org list``."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.errors import ContentError, SettingsError


def main(argv: list[str] | None = None) -> int:
    """Run one command; configuration errors end with a one-line message and exit code 2."""
    parser = argparse.ArgumentParser(prog="python -m bot")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="start the app (ASGI server) on APP_PORT")
    sub.add_parser("db-upgrade", help="create or upgrade the database schema")
    sub.add_parser("check-content", help="validate content/ and list texts missing in a language")
    from bot.console.cli import add_commands

    add_commands(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO (two lines per client message: the engine call and, in the
    # access log, the engine's action call); failures are logged where they are handled.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from bot.settings import load_settings

    try:
        settings = load_settings()
        if args.command in ("adviser", "org"):
            from bot.console.cli import run

            return run(args, settings)
        if args.command == "db-upgrade":
            from bot.storage.database import Database

            Database(settings.database_url).upgrade()
            print(f"database is up to date: {settings.database_url}")
            return 0
        if args.command == "check-content":
            from bot.content import load_content

            content = load_content(settings.content_dir)
            missing = content.missing()
            for lang, key in missing:
                print(f"missing: texts/{lang}.yml: {key}")
            print(
                f"content ok: {len(content.texts['de'])} keys, {len(content.answers)} answers, "
                f"{len(missing)} texts missing in some language"
            )
            return 1 if missing else 0
        import uvicorn

        from bot.app import create_app
        from bot.bootstrap import bootstrap

        services = bootstrap(settings)
        # No access log: request paths carry widget session ids (/widget/history/...) and calendar
        # tokens (?token=...), which must not end up in log files; nginx in deploy/ keeps none either.
        # (It also cost ~4 % of the app's CPU per turn: two lines per message, the action call's too.)
        uvicorn.run(
            create_app(services),
            host=settings.app_host,
            port=settings.app_port,
            log_level="info",
            access_log=False,
        )
        return 0
    except (SettingsError, ContentError) as exc:
        print(f"lotse: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
