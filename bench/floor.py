"""The bare floor: a FastAPI + SQLModel app that validates a body like dsrflow's intake and inserts
one row. dsrflow's creates and decisions are measured against it, in the same run, with the same
load generator, on the same database settings (``dsrflow.db.make_engine``: WAL and the write lock
taken at BEGIN on SQLite).

    DSRFLOW_DATABASE_URL=sqlite:///x.sqlite3 uvicorn --factory bench.floor:create_app
"""

# No ``from __future__ import annotations``: FastAPI must see the route's dependency itself,
# which is local to create_app.
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlmodel import Field as Column
from sqlmodel import Session, SQLModel

from dsrflow.db import make_engine


class FloorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    details: str = Field(min_length=1, max_length=20_000)
    language: str = "ja"


class FloorRequest(SQLModel, table=True):
    __tablename__ = "floor_requests"

    id: str = Column(default_factory=lambda: uuid.uuid4().hex, primary_key=True)
    type: str
    name: str
    email: str
    details: str
    language: str
    received_at: datetime


class FloorCreated(BaseModel):
    id: str
    type: str
    received_at: datetime


def create_app() -> FastAPI:
    engine = make_engine(os.environ["DSRFLOW_DATABASE_URL"])
    SQLModel.metadata.create_all(engine, tables=[FloorRequest.__table__])  # type: ignore[list-item]
    app = FastAPI()

    def session() -> Iterator[Session]:
        with Session(engine, expire_on_commit=False) as s:
            yield s

    @app.post("/api/v1/requests", status_code=201, response_model=FloorCreated)
    def create(data: FloorCreate, s: Annotated[Session, Depends(session)]) -> FloorCreated:
        row = FloorRequest(**data.model_dump(), received_at=datetime.now(UTC))
        s.add(row)
        s.commit()
        return FloorCreated(id=row.id, type=row.type, received_at=row.received_at)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
