"""The ``dsrflow`` command line.

Each command imports what it uses, inside its function: ``ingest-email`` is started by the mail
server for every message, and must not pay for the web app, the scheduler or Alembic
(``tests/inbound_mail/test_cli_startup.py`` checks what it imports).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from dsrflow import logs

if TYPE_CHECKING:
    from dsrflow.config import Settings
    from dsrflow.inbound_mail.handoff import PipeAnswer
    from dsrflow.runtime import Runtime


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def _settings() -> Settings:
    from pydantic import ValidationError

    from dsrflow.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DSRFLOW_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise CliError(f"configuration (environment or .env): {problems}") from exc


def _runtime(*, migrate: bool = False) -> Runtime:
    """Settings, definitions and the database. Only the long-running processes (``serve``,
    ``scheduler``) and ``db upgrade`` migrate; every other command refuses an outdated schema."""
    from dsrflow.db import migrate as run_migrations
    from dsrflow.inbound_mail.rules_file import rules_for
    from dsrflow.runtime import Runtime

    rt = Runtime.load(_settings())
    rules_for(rt)  # the mail-intake rules are part of workflows/: a bad file stops us too
    for warning in rt.definitions.warnings:  # not fatal, but said at every start
        logging.getLogger("dsrflow").warning("workflows: %s", warning)
    if migrate:
        run_migrations(rt.db)
    else:
        _require_current_schema(rt)
    return rt


def _database_name(rt: Runtime) -> str:
    return rt.db.url.render_as_string(hide_password=True)


def _require_current_schema(rt: Runtime) -> None:
    from dsrflow.db import schema_revisions

    current, head = schema_revisions(rt.db)
    if current != head:
        raise CliError(
            f"the database {_database_name(rt)} is at schema {current or 'none (empty)'}, "
            f"this version needs {head}: run `dsrflow db upgrade` first"
        )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from dsrflow.db import make_engine, migrate

    db = make_engine(_settings().resolved_database_url)
    before, after = migrate(db)
    name = db.url.render_as_string(hide_password=True)
    if before == after:
        print(f"{name}: already at schema {after}")
    else:
        print(f"{name}: upgraded from schema {before or 'none (empty)'} to {after}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from dsrflow.db import make_engine, schema_revisions

    settings = _settings()
    db = make_engine(settings.resolved_database_url)
    current, head = schema_revisions(db)
    state = "current" if current == head else "outdated: run `dsrflow db upgrade`"
    print(f"schema {current or 'none (empty)'} (this version: {head}; {state})")
    return 0 if current == head else 1


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from dsrflow.app import create_app
    from dsrflow.runtime import settle
    from dsrflow.web.server import uvicorn_options

    rt = _runtime(migrate=True)
    # Bounded headers, proxies believed only when configured; one INFO line per call costs
    # more than a create on SQLite, so the access log is on only when asked for.
    options = uvicorn_options(
        rt.settings,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=rt.settings.access_log,
    )
    if args.workers > 1:
        return _serve_workers(args, options)
    background = None
    if not args.no_scheduler:
        from dsrflow.scheduler.runner import running_scheduler

        background = running_scheduler
    server = uvicorn.Server(uvicorn.Config(create_app(rt, background=background), **options))
    logs.install()  # after uvicorn set up its loggers: requester links never reach a log
    settle()
    server.run()
    return 0


def _serve_workers(args: argparse.Namespace, options: dict[str, object]) -> int:
    """N API processes on one port (uvicorn's supervisor) and one scheduler process beside them;
    the database was migrated once, here, before any of them starts."""
    import subprocess

    import uvicorn

    scheduler = None
    if not args.no_scheduler:
        command = [sys.executable, "-m", "dsrflow.cli", "scheduler"]
        scheduler = subprocess.Popen(command + (["-v"] if args.verbose else []))
    try:
        uvicorn.run(
            "dsrflow.cli:worker_app",
            factory=True,
            workers=args.workers,
            # A worker imports everything before it answers; on a busy machine that takes more
            # than uvicorn's 5 s, after which it would kill the worker as hung.
            timeout_worker_healthcheck=60,
            **options,  # type: ignore[arg-type]
        )
    finally:
        if scheduler is not None:
            scheduler.terminate()
            try:
                scheduler.wait(30)
            except subprocess.TimeoutExpired:
                scheduler.kill()
    return 0


def worker_app() -> object:
    """One API worker of ``dsrflow serve --workers N``: no scheduler and no migration (the
    parent did both)."""
    from dsrflow.app import create_app
    from dsrflow.runtime import settle

    app = create_app(_runtime(migrate=False))
    logs.install()
    settle()
    return app


def cmd_scheduler(args: argparse.Namespace) -> int:
    from dsrflow.runtime import settle
    from dsrflow.scheduler.runner import run_forever

    rt = _runtime(migrate=True)
    settle()
    run_forever(rt)
    return 0


def cmd_handlers_add(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from dsrflow.auth.service import add_handler

    rt = _runtime()
    with Session(rt.db, expire_on_commit=False) as session:
        try:
            handler, token = add_handler(session, args.name, args.email, args.role)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    print(f"handler {handler.id} ({handler.role}) created. Token (shown once, keep it secret):")
    print(token)
    return 0


def cmd_handlers_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from dsrflow.auth.repository import list_handlers

    rt = _runtime()
    with Session(rt.db) as session:
        for h in list_handlers(session):
            status = f"revoked {h.revoked_at:%Y-%m-%d}" if h.revoked_at else "active"
            print(f"{h.id}\t{h.role}\t{status}\t{h.name} <{h.email}>")
    return 0


def cmd_handlers_revoke(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from dsrflow.auth.service import revoke_handler

    rt = _runtime()
    with Session(rt.db) as session:
        if revoke_handler(session, args.id) is None:
            raise CliError(f"no handler with id {args.id}")
    print(f"handler {args.id} revoked")
    return 0


def cmd_workflows_check(args: argparse.Namespace) -> int:
    from dsrflow.inbound_mail.rules_file import RULES_FILE, load_rules
    from dsrflow.workflow.calendar import BusinessCalendar
    from dsrflow.workflow.definitions import load_definitions
    from dsrflow.workflow.engine import GUARDS, Engine

    settings = _settings()
    calendar = BusinessCalendar(settings.tz, settings.closure_days)
    definitions = load_definitions(settings.workflows_dir, guards=GUARDS, calendar=calendar)
    Engine(definitions)
    load_rules(settings.workflows_dir / RULES_FILE, definitions.workflows)
    for warning in definitions.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    warned = f" ({len(definitions.warnings)} warnings)" if definitions.warnings else ""
    print(
        f"{settings.workflows_dir}: {len(definitions.workflows)} workflows "
        f"({', '.join(definitions.workflows)}), {len(definitions.reasons)} legal reasons, "
        f"mail-intake rules: OK{warned}"
    )
    return 0


def cmd_workflows_diagram(args: argparse.Namespace) -> int:
    from dsrflow.workflow.definitions import load_definitions
    from dsrflow.workflow.diagram import mermaid
    from dsrflow.workflow.engine import GUARDS

    definitions = load_definitions(_settings().workflows_dir, guards=GUARDS)
    types = [args.type] if args.type else list(definitions.workflows)
    for request_type in types:
        if request_type not in definitions.workflows:
            raise CliError(
                f"unknown type '{request_type}'; one of {', '.join(definitions.workflows)}"
            )
        print(mermaid(definitions.workflows[request_type]))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from dsrflow.audit.chain import verify_chains

    rt = _runtime()
    with Session(rt.db) as session:
        count, breaks = verify_chains(session)
    for b in breaks:
        print(f"BROKEN request {b.request_id} event {b.seq}: {b.problem}")
    print(f"{count} events checked, {len(breaks)} breaks")
    return 1 if breaks else 0


def cmd_ingest_email(args: argparse.Namespace) -> int:
    """One message (FILE or stdin, for an MTA's pipe), or many in one process: several FILEs,
    or every message in a Maildir's new/ (each moved to cur/ once recorded). The exit status
    is the worst of the messages': 75 (try again later), 65 (over the size limit), 0."""
    from pathlib import Path

    names: list[str] = list(args.files) or ([] if args.maildir else ["-"])
    maildir = Path(args.maildir) if args.maildir else None
    if maildir is not None:
        if not (maildir / "new").is_dir():
            raise CliError(f"{maildir} is not a Maildir (no new/ directory)")
        names += sorted(str(p) for p in (maildir / "new").iterdir() if p.is_file())
    batch = len(names) > 1 or maildir is not None
    messages: list[tuple[str, bytes]] = []
    for name in names:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {name}: {exc.strerror}") from exc
        if not raw:
            raise CliError(f"{'standard input' if name == '-' else name} is empty")
        messages.append((name, raw))
    if not batch:
        # The running service records it, if it listens: this process then imports neither
        # pydantic nor SQLAlchemy (docs/mail-intake.md). Else it is recorded here.
        from dsrflow import locations
        from dsrflow.inbound_mail.handoff import hand_off

        answer = hand_off(locations.intake_socket(locations.data_dir()), messages[0][1])
        if answer is not None:
            return _answered(answer)
    try:
        # No migration here ("dsrflow db upgrade" migrates): an MTA's pipe should start fast.
        rt = _runtime(migrate=False)
    except Exception as exc:  # the configuration or the workflows: nothing was recorded
        logging.getLogger("dsrflow").debug("ingest-email failed", exc_info=True)
        print(f"dsrflow: cannot record the message now: {exc}", file=sys.stderr)
        return 75
    from dsrflow.inbound_mail.reading import ingest_batch, ingest_piped

    if not batch:
        return _answered(ingest_piped(rt, messages[0][1]))
    worst = 0
    # Each answer comes once its message is committed: only then is its file moved to cur/.
    for name, answer in ingest_batch(rt, messages):
        status = _answered(answer)
        if status == 0 and maildir is not None:
            path = Path(name)
            path.rename(maildir / "cur" / f"{path.name}:2,S")
        worst = max(worst, status, key=lambda s: {0: 0, 65: 1, 75: 2}[s])
    return worst


def _answered(answer: PipeAnswer) -> int:
    if answer.out:
        print(answer.out)
    if answer.err:
        print(answer.err, file=sys.stderr)
    return answer.exit_code


def cmd_outbox_flush(args: argparse.Namespace) -> int:
    import asyncio

    from dsrflow.outbound_mail.dispatch import flush_outbox

    rt = _runtime()
    report = asyncio.run(
        flush_outbox(
            rt.db,
            rt.settings,
            rt.letters,
            from_name=rt.definitions.company.name.for_language("ja"),
            due_only=args.due_only,
        )
    )
    print(f"sent {report.sent}, retried later {report.retried}, failed {report.failed}")
    if report.error is not None:
        print(f"dsrflow: mail server: {report.error}", file=sys.stderr)
    return 1 if report.unreachable else 0


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from dsrflow.db import read_session
    from dsrflow.outbound_mail import repository

    rt = _runtime(migrate=False)
    tz = rt.settings.tz
    with read_session(rt.db) as session:
        rows = repository.listing(session, args.status, args.limit)
        totals = repository.count_by_status(session)
    # No recipient and no body: the reference, the letter and the state say what it is.
    for row in rows:
        when = row.sent_at or row.next_attempt_at
        error = f"\t{row.last_error}" if row.last_error and row.status != "sent" else ""
        print(
            f"{row.id}\t{row.status}\t{row.reference or '-'}\t{row.letter}\t"
            f"attempts {row.attempts}\t{when.astimezone(tz):%Y-%m-%d %H:%M}{error}"
        )
    summary = ", ".join(f"{status} {n}" for status, n in sorted(totals.items())) or "empty"
    print(f"outbox: {summary}", file=sys.stderr)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from dsrflow.retention import purge

    rt = _runtime(migrate=False)
    report = purge(rt, dry_run=args.dry_run)
    verb = "would purge" if args.dry_run else "purged"
    for line in report.lines():
        print(f"{verb} {line}")
    print(f"{verb}: {report.summary()}", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from dsrflow.backup import BackupError, backup_sqlite

    rt = _runtime(migrate=False)
    try:
        pages = backup_sqlite(rt.db, args.path)
    except BackupError as exc:
        raise CliError(str(exc)) from exc
    print(f"backed up to {args.path} ({pages} pages)")
    return 0


def _moment(text: str) -> datetime:
    """ISO 8601; a time without an offset is read in the company's time zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return moment  # a naive time is read in the company's zone by the command


def cmd_sweep(args: argparse.Namespace) -> int:
    from dsrflow.db import utcnow
    from dsrflow.deadlines.service import sweep
    from dsrflow.reports.service import record_job_run

    rt = _runtime()
    as_of = args.as_of
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=rt.settings.tz)
    started = utcnow()
    report = sweep(rt, as_of, dry_run=args.dry_run)
    if not args.dry_run:  # a sweep run from cron shows in /metrics too (job "sweep")
        record_job_run(rt, "sweep", started, utcnow(), report.errors)
    for mail in report.planned:
        print(f"{mail.reference}\t{mail.kind}:{mail.step}\t{mail.recipient}")
    verb = "would queue" if args.dry_run else "queued"
    print(
        f"{verb} {len(report.planned)}; already sent {report.already_sent}; "
        f"errors {report.errors}"
        + ("" if args.dry_run else " (sent by the scheduler or `dsrflow outbox flush`)"),
        file=sys.stderr,
    )
    return 1 if report.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsrflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="API, pages and (unless --no-scheduler) the scheduler")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-scheduler", action="store_true")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes on the one port (one scheduler runs beside them)",
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("scheduler", help="the scheduler alone").set_defaults(func=cmd_scheduler)

    db = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser(
        "upgrade", help="apply the migrations under a lock (serve and scheduler do it at start)"
    ).set_defaults(func=cmd_db_upgrade)
    db.add_parser("current", help="the schema revision, and whether it is current").set_defaults(
        func=cmd_db_current
    )

    handlers = sub.add_parser("handlers", help="handler tokens").add_subparsers(
        dest="action", required=True
    )
    add = handlers.add_parser("add", help="create a handler and print its token once")
    add.add_argument("name")
    add.add_argument("--email", required=True)
    add.add_argument("--role", default="handler", choices=["handler", "admin", "auditor"])
    add.set_defaults(func=cmd_handlers_add)
    handlers.add_parser("list", help="list handlers").set_defaults(func=cmd_handlers_list)
    revoke = handlers.add_parser("revoke", help="revoke a handler's token")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_handlers_revoke)

    workflows = sub.add_parser("workflows", help="the definitions in workflows/").add_subparsers(
        dest="action", required=True
    )
    workflows.add_parser("check", help="validate every file").set_defaults(func=cmd_workflows_check)
    diagram = workflows.add_parser("diagram", help="print Mermaid state diagrams")
    diagram.add_argument("type", nargs="?")
    diagram.set_defaults(func=cmd_workflows_diagram)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    audit.add_parser("verify", help="recompute the hash chains").set_defaults(func=cmd_audit_verify)

    ingest_email = sub.add_parser(
        "ingest-email",
        help="RFC 5322 messages from FILEs, a Maildir or stdin; prints what became of each",
    )
    ingest_email.add_argument(
        "files", nargs="*", metavar="FILE", help="files, or - for stdin (the default)"
    )
    ingest_email.add_argument(
        "--maildir", metavar="DIR", help="also every message in DIR/new (moved to DIR/cur)"
    )
    ingest_email.set_defaults(func=cmd_ingest_email)

    outbox = sub.add_parser("outbox", help="outgoing mail").add_subparsers(
        dest="action", required=True
    )
    flush = outbox.add_parser(
        "flush", help="send what is waiting, once, deferred messages included"
    )
    flush.add_argument(
        "--due-only", action="store_true", help="leave messages in backoff until they are due"
    )
    flush.set_defaults(func=cmd_outbox_flush)
    listing = outbox.add_parser("list", help="what waits, what was sent, what failed")
    listing.add_argument("--status", choices=["pending", "sending", "sent", "failed"])
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_outbox_list)

    purge = sub.add_parser("purge", help="remove personal data past its retention period")
    purge.add_argument("--dry-run", action="store_true", help="print what would be removed")
    purge.set_defaults(func=cmd_purge)

    backup = sub.add_parser("backup", help="a consistent copy of the SQLite database")
    backup.add_argument("path", help="the file to write (must not exist)")
    backup.set_defaults(func=cmd_backup)
    sweep = sub.add_parser("sweep", help="one deadline sweep (reminders, escalations)")
    sweep.add_argument("--as-of", type=_moment, help="ISO 8601 time (default: now)")
    sweep.add_argument("--dry-run", action="store_true", help="print what would be sent")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def _definition_errors(exc: Exception) -> list[str] | None:
    """The errors of a WorkflowError or IntakeRulesError, else None. Their modules are looked up
    only if loaded (an exception of theirs means they are), so that no command imports them
    just to catch what it cannot raise."""
    for module, name in (
        ("dsrflow.workflow.definitions", "WorkflowError"),
        ("dsrflow.inbound_mail.rules_file", "IntakeRulesError"),
    ):
        error_class = getattr(sys.modules.get(module), name, None)
        if error_class is not None and isinstance(exc, error_class):
            return list(exc.errors)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logs.install()
    # transitions logs every state's exit and entry at INFO: two lines per decision.
    for noisy in ("alembic", "apscheduler", "transitions"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"dsrflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        errors = _definition_errors(exc)
        if errors is not None:
            print(f"dsrflow: invalid workflow definitions ({len(errors)} errors):", file=sys.stderr)
            for error in errors:
                print(f"  {error}", file=sys.stderr)
            return 2
        # No traceback for the user (-v shows it); the message names what failed.
        logging.getLogger("dsrflow").debug("unexpected error", exc_info=True)
        print(f"dsrflow: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
