"""What the metrics read besides the domain tables: the scheduler's job runs."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime


class JobRun(SQLModel, table=True):
    """The last run of a scheduler job and running totals, in the database so that every API
    process reports the same figures whichever process ran the job."""

    __tablename__ = "job_runs"

    job: str = Field(primary_key=True, max_length=64)
    runs: int = 0
    errors: int = 0  # items that failed, plus runs that failed as a whole
    last_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_duration_seconds: float = 0.0
    last_errors: int = 0
