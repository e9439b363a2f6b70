"""What a process loads once at start-up and every layer shares: settings, definitions, engine."""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property

from sqlalchemy.engine import Engine as DbEngine

from dsrflow.config import Settings
from dsrflow.db import make_engine
from dsrflow.outbound_mail.render import LetterRenderer
from dsrflow.workflow.calendar import BusinessCalendar
from dsrflow.workflow.definitions import AWAITING_STATE, Definitions, load_definitions
from dsrflow.workflow.engine import GUARDS, Engine


@dataclass
class Runtime:
    settings: Settings
    definitions: Definitions
    engine: Engine
    calendar: BusinessCalendar
    letters: LetterRenderer
    db: DbEngine

    @classmethod
    def load(
        cls,
        settings: Settings,
        db: DbEngine | None = None,
        *,
        definitions: Definitions | None = None,
    ) -> Runtime:
        """Load and validate workflows/ (raises WorkflowError naming file and key).

        ``definitions`` already loaded from ``settings.workflows_dir`` may be passed in (the
        tests load them once per session)."""
        calendar = BusinessCalendar(settings.tz, settings.closure_days)
        if definitions is None:
            definitions = load_definitions(settings.workflows_dir, guards=GUARDS, calendar=calendar)
        return cls(
            settings=settings,
            definitions=definitions,
            engine=Engine(definitions),
            calendar=calendar,
            letters=LetterRenderer(settings.workflows_dir / "templates"),
            db=db
            if db is not None
            else make_engine(
                settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
            ),
        )

    @cached_property
    def secret_key(self) -> bytes:
        """The key that signs CSRF tokens and receipt links: DSRFLOW_SECRET_KEY, else a random
        key created once in DATA_DIR (every process on the host shares it)."""
        if self.settings.secret_key:
            return self.settings.secret_key.get_secret_value().encode()
        path = self.settings.data_dir / "secret_key"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written aside, then linked into place: a racing process never reads half a key.
            draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip().encode()

    @property
    def mail_domain(self) -> str:
        return self.settings.mail_domain

    @cached_property
    def internal_addresses(self) -> list[str]:
        """The company's own mailboxes: the handlers' and the escalation address."""
        s = self.settings
        return [str(a) for a in (s.handler_email, s.escalation_email) if a]

    @cached_property
    def paused_types(self) -> list[str]:
        """Types whose internal clock stands still while waiting for the requester."""
        return [
            wf.id
            for wf in self.definitions.workflows.values()
            if wf.deadline.pause_while_awaiting_requester
        ]

    def is_overdue(
        self,
        request_type: str,
        state: str,
        due_at: datetime,
        now: datetime,
        art39_date: date | None = None,
    ) -> bool:
        """Past the internal target (unless its clock is paused), or on or past the Art. 39 date
        whatever any pause or extension says; never once closed."""
        if state in self.closed_states:
            return False
        if art39_date is not None and now.astimezone(self.settings.tz).date() >= art39_date:
            return True
        paused = state == AWAITING_STATE and request_type in self.paused_types
        return due_at < now and not paused

    @cached_property
    def open_states(self) -> list[str]:
        return sorted(
            {s for wf in self.definitions.workflows.values() for s in wf.states}
            - set(self.closed_states)
        )

    @cached_property
    def closed_states(self) -> list[str]:
        return sorted({s for wf in self.definitions.workflows.values() for s in wf.terminal_states})


def settle() -> None:
    """For a long-running process (``serve``, its workers, ``scheduler``) once it has loaded
    everything: what it holds now (modules, definitions, templates, the schema's metadata) lives
    as long as the process, so it is moved out of the garbage collector's reach (``gc.freeze``).
    Otherwise every full collection walks all of it again: measured, 15 to 30 % of a deadline
    sweep that queues 10,000 reminders. Later garbage is collected as before."""
    gc.collect()
    gc.freeze()
