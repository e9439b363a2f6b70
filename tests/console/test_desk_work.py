"""The desk's work in the console: the queue, a request's decisions, notes, assignment, triage."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from dsrflow.audit.chain import verify_chains
from dsrflow.audit.models import Event
from dsrflow.deadlines.service import sweep
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.console.conftest import csrf_of


def label(rt: Runtime, state: str, request_type: str = "disclosure") -> str:
    """A state's Japanese label, as the workflow names it."""
    return rt.definitions.workflow(request_type).states[state].label.ja


def references(page: str) -> list[str]:
    return re.findall(r'data-reference="(DSR-\d{4}-\d{6})"', page)


def _set(rt: Runtime, request_id: str, **values: object) -> None:
    with Session(rt.db) as s:
        s.execute(update(Request).where(Request.id == request_id).values(**values))  # type: ignore[arg-type]
        s.commit()


def test_queue_lists_open_requests_soonest_due_first(rt: Runtime, desk: TestClient) -> None:
    now = datetime.now(UTC)
    late = make_request(rt, received_at=now - timedelta(days=1))
    early = make_request(rt, "correction", name="鈴木 一郎", email="ichiro@example.jp")
    closed = make_request(rt, state="withdrawn")
    overdue = make_request(rt, "suspension", received_at=now - timedelta(days=30))
    _set(rt, early.id, due_at=now + timedelta(days=2))
    page = desk.get("/console/").text
    assert references(page) == [overdue.reference, early.reference, late.reference]
    assert closed.reference not in page
    row = page.split(f'data-reference="{overdue.reference}"')[1].split("</tr>")[0]
    assert "tone-overdue" in row
    assert "日超過" in row
    soon = page.split(f'data-reference="{early.reference}"')[1].split("</tr>")[0]
    assert "tone-soon" in soon
    assert "あと2日" in soon


def test_queue_filters_and_lookup(rt: Runtime, desk: TestClient) -> None:
    now = datetime.now(UTC)
    a = make_request(rt, name="山田 太郎", email="Taro@Example.jp")
    b = make_request(rt, "correction", name="鈴木 一郎", email="ichiro@example.jp")
    c = make_request(
        rt,
        "suspension",
        email="c@example.jp",
        received_at=now - timedelta(days=30),
        state="identity_verified",
    )
    assert references(desk.get("/console/?type=correction").text) == [b.reference]
    assert references(desk.get("/console/?overdue=1").text) == [c.reference]
    assert references(desk.get("/console/?state=identity_verified").text) == [c.reference]
    assert set(references(desk.get("/console/?due_within=14").text)) == {
        a.reference,
        b.reference,
        c.reference,
    }
    _set(rt, b.id, due_at=now + timedelta(days=30))
    assert b.reference not in references(desk.get("/console/?due_within=14").text)
    assert references(desk.get(f"/console/?q={a.reference.lower()}").text) == [a.reference]
    assert references(desk.get("/console/?q=taro@example.JP").text) == [a.reference]
    assert references(desk.get("/console/?q=鈴木一郎").text) == [b.reference]  # spaces ignored
    assert references(desk.get("/console/?q=000002").text) == [b.reference]
    assert references(desk.get("/console/?channel=email").text) == []
    # A value that names nothing is an error, not an empty queue.
    for bad in ("state=opne", "type=nope", "channel=fax", "due_within=soon"):
        assert desk.get(f"/console/?{bad}").status_code == 422, bad


def test_queue_flags_what_the_requester_did_since_a_handler_looked(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt)
    page = desk.get("/console/").text
    assert "未確認" in page  # never opened by a handler
    desk.get(f"/console/requests/{request.id}")
    page = desk.get("/console/").text
    assert "未確認" not in page
    assert "請求者の動きあり" not in page
    # The requester writes again: the mail joins the request.
    with Session(rt.db, expire_on_commit=False) as s:
        joined = _mail(
            rt,
            s,
            subject=f"[{request.reference}] 追加の資料",
            sender="taro@example.jp",
            received_at=datetime.now(UTC),
        )
    assert joined == "joined"
    assert "請求者の動きあり" in desk.get("/console/").text
    desk.get(f"/console/requests/{request.id}")
    assert "請求者の動きあり" not in desk.get("/console/").text


def _page(desk: TestClient, request_id: str) -> str:
    answer = desk.get(f"/console/requests/{request_id}")
    assert answer.status_code == 200
    return answer.text


def _decide(desk: TestClient, request_id: str, page: str, **fields: str) -> object:
    version = re.search(r'name="expected_version" value="(\d+)"', page)
    seen = re.search(r'name="seen_seq" value="(\d+)"', page)
    assert version
    assert seen
    data = {
        "csrf_token": csrf_of(page),
        "expected_version": version.group(1),
        "seen_seq": seen.group(1),
        **fields,
    }
    preview = desk.post(f"/console/requests/{request_id}/preview", data=data)
    if preview.status_code != 200:
        return preview
    return desk.post(
        f"/console/requests/{request_id}/transitions", data=data, follow_redirects=False
    ), preview


def test_only_the_actions_allowed_now_with_only_the_fitting_reasons(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt, "purpose_notice")
    page = _page(desk, request.id)
    assert 'id="action-verify_identity"' in page
    assert 'id="action-refuse"' in page
    assert 'id="action-fulfill"' not in page
    assert 'id="action-info_received"' not in page
    offered = set(re.findall(r'name="reason_code" value="([A-Z_]+)"', page))
    fitting = {r.code for r in rt.definitions.reasons_for("purpose_notice", "received")}
    assert offered == fitting
    assert all(code.startswith("PROC_") for code in offered)
    # Each reason is shown with its article and statutory text.
    reason = rt.definitions.reasons[sorted(offered)[0]]
    assert reason.citation.ja in page
    assert reason.statutory_text.ja in page
    # email_link is not offered where it does not suffice.
    verify = page.split('id="action-verify_identity"')[1].split("</details>")[0]
    assert 'value="email_link"' not in verify
    assert 'value="id_document_copy"' in verify


def test_verify_then_refuse_with_a_preview_of_the_english_letter(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt, language="en")
    answer, preview = _decide(  # type: ignore[misc]
        desk,
        request.id,
        _page(desk, request.id),
        trigger="verify_identity",
        method="id_document_copy",
        evidence="Passport copy; name matches.",
    )
    assert "この操作では、請求者に通知は送られません" in preview.text
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/requests/{request.id}?done=verify_identity"
    page = desk.get(answer.headers["location"]).text
    assert f'id="state">{label(rt, "identity_verified")}<' in page
    assert "「本人確認済みとする」を記録しました" in page
    answer, preview = _decide(  # type: ignore[misc]
        desk,
        request.id,
        page,
        trigger="refuse",
        reason_code="DISC_VIOLATES_LAW",
        explanation="Disclosure would breach the Telecommunications Business Act.",
    )
    # The letter is shown exactly as it will go, in the requester's language (English).
    letter = re.search(r'<div class="letter" id="letter" lang="en">(.*?)</div>', preview.text, re.S)
    assert letter
    assert "Disclosure would breach the Telecommunications Business Act." in letter.group(1)
    assert "Dear " in letter.group(1)
    assert answer.status_code == 303
    with Session(rt.db) as s:
        sent = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.request_id == request.id, OutboxMessage.letter == "refused"
            )
        ).one()
    assert sent.body.strip() in letter.group(1).replace("&#39;", "'").replace("&quot;", '"')
    assert f'id="state">{label(rt, "refused")}<' in _page(desk, request.id)


def test_a_reason_that_does_not_fit_is_shown_next_to_its_field(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt)
    answer = _decide(
        desk,
        request.id,
        _page(desk, request.id),
        trigger="refuse",
        reason_code="DISC_VIOLATES_LAW",  # substantive: not before identity is verified
        explanation="x",
    )
    assert answer.status_code == 422  # type: ignore[attr-defined]
    text = answer.text  # type: ignore[attr-defined]
    assert 'id="refuse-reason_code-error"' in text
    assert 'id="action-refuse" open' in text
    assert "x</textarea>" in text  # what was typed is kept


def test_a_stale_version_says_what_changed_never_a_raw_409(rt: Runtime, desk: TestClient) -> None:
    request = make_request(rt)
    page = _page(desk, request.id)
    # Meanwhile a colleague asks the requester for information.
    with Session(rt.db, expire_on_commit=False) as s:
        service.transition(
            rt,
            s,
            request.id,
            TransitionIn(trigger="request_info", message="サービス名をお知らせください。"),
            actor="handler:99",
        )
    answer = _decide(
        desk,
        request.id,
        page,
        trigger="verify_identity",
        method="id_document_copy",
        evidence="運転免許証の写し（氏名・住所が一致）",
    )
    assert answer.status_code == 409  # type: ignore[attr-defined]
    text = answer.text  # type: ignore[attr-defined]
    assert "text/html" in answer.headers["content-type"]  # type: ignore[attr-defined]
    assert "画面を開いた後に更新されています" in text
    awaiting = rt.definitions.workflow("disclosure").states["awaiting_requester"].label.ja
    assert awaiting in text
    changes = text.split('id="changes"')[1].split("</ul>")[0]
    assert "請求者に確認を求める" in changes
    assert changes.count("<li>") == 1  # only what happened after the page was opened
    with Session(rt.db) as s:
        assert s.get(Request, request.id).state == "awaiting_requester"  # type: ignore[union-attr]


def test_internal_notes_are_audited_and_never_reach_the_requester(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt)
    page = _page(desk, request.id)
    answer = desk.post(
        f"/console/requests/{request.id}/notes",
        data={"csrf_token": csrf_of(page), "body": "電話で本人と話した。免許証の写しを待つ。"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    page = _page(desk, request.id)
    assert "電話で本人と話した。" in page
    with Session(rt.db) as s:
        events = s.exec(select(Event).where(Event.request_id == request.id)).all()
        letters = s.exec(select(OutboxMessage.body)).all()
        assert verify_chains(s)[1] == []
    note = [e for e in events if e.kind == "note"]
    assert len(note) == 1
    assert note[0].actor.startswith("handler:")
    assert "電話" not in str(note[0].detail)  # the chain records the note, not its words
    assert not any("電話で本人と話した" in body for body in letters)
    empty = desk.post(
        f"/console/requests/{request.id}/notes", data={"csrf_token": csrf_of(page), "body": " "}
    )
    assert empty.status_code == 422


def test_assignment_sends_reminders_to_the_assignee_too(rt: Runtime, desk: TestClient) -> None:
    request = make_request(rt)
    page = _page(desk, request.id)
    assignee = re.search(r'<option value="(\d+)" >佐藤 花子</option>', page)
    assert assignee
    answer = desk.post(
        f"/console/requests/{request.id}/assignee",
        data={"csrf_token": csrf_of(page), "assignee_id": assignee.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert 'id="assignee">佐藤 花子<' in _page(desk, request.id)
    queue = desk.get(f"/console/?assignee={assignee.group(1)}").text
    assert references(queue) == [request.reference]
    assert references(desk.get("/console/?assignee=none").text) == []
    report = sweep(rt, datetime.now(UTC) + timedelta(days=13))
    due = {m.recipient for m in report.planned if m.kind == "due"}
    assert due == {rt.settings.handler_email, "handler-5@example.jp"}
    with Session(rt.db) as s:
        kinds = [e.kind for e in s.exec(select(Event).where(Event.request_id == request.id))]
    assert "assigned" in kinds


def _mail(
    rt: Runtime,
    session: Session,
    *,
    subject: str,
    sender: str,
    received_at: datetime | None = None,
) -> str:
    from dsrflow.inbound_mail.schemas import InboundMail
    from dsrflow.inbound_mail.service import record_inbound

    raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody".encode()
    named = tuple(re.findall(r"DSR-\d{4}-\d{6}", subject))
    outcome = record_inbound(
        rt,
        session,
        InboundMail(
            message_id=f"<{abs(hash(subject))}@example.jp>",
            raw=raw,
            raw_size=len(raw),
            source="file",
            received_at=received_at or datetime.now(UTC) - timedelta(days=2),
            received_at_source="received",
            from_address=sender,
            from_name="田中 一郎",
            subject=subject,
            text="個人情報について質問があります。",
            named_references=named,
            type_problem=None if named else "no request type recognised",
        ),
    )
    return (
        f"{outcome.status}:{outcome.inbound_id}" if outcome.status == "triage" else outcome.status
    )


def _triage(rt: Runtime, session: Session, *, subject: str, sender: str) -> int:
    outcome = _mail(rt, session, subject=subject, sender=sender)
    assert outcome.startswith("triage:"), outcome
    return int(outcome.partition(":")[2])


def test_triage_convert_with_an_agent_and_dismiss_with_a_reply(
    rt: Runtime, desk: TestClient, session: Session
) -> None:
    first = _triage(rt, session, subject="question-one", sender="ichiro@example.jp")
    second = _triage(rt, session, subject="question-two", sender="hanako@example.jp")
    inbox = desk.get("/console/inbox").text
    assert f'data-id="{first}"' in inbox
    assert "請求とした場合の第39条の日" in inbox
    page = desk.get(f"/console/inbox/{first}").text
    answer = desk.post(
        f"/console/inbox/{first}/convert",
        data={
            "csrf_token": csrf_of(page),
            "type": "suspension",
            "name": "田中 一郎",
            "email": "ichiro@example.jp",
            "language": "ja",
            "as_agent": "1",
            "agent_name": "弁護士 山本",
            "agent_email": "yamamoto@law.example.jp",
            "agent_relation": "appointed_agent",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    request_page = desk.get(answer.headers["location"]).text
    assert "弁護士 山本" in request_page
    assert "停止" in request_page
    with Session(rt.db) as s:
        row = s.get(InboundMessage, first)
        assert row is not None
        assert row.status == "created"
        request = s.get(Request, row.request_id)
        assert request is not None
        assert request.received_at == row.received_at
        assert request.agent_relation == "appointed_agent"
    page = desk.get(f"/console/inbox/{second}").text
    answer = desk.post(
        f"/console/inbox/{second}/dismiss",
        data={"csrf_token": csrf_of(page), "note": "一般的な質問", "reply": "how_to_request"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    with Session(rt.db) as s:
        reply = s.exec(
            select(OutboxMessage).where(OutboxMessage.recipient == "hanako@example.jp")
        ).one()
        dismissed = s.get(InboundMessage, second)
    assert reply.letter == "triage_how_to_request"
    assert "/procedure" in reply.body
    assert dismissed is not None
    assert dismissed.status == "dismissed"
    assert f'data-id="{second}"' not in desk.get("/console/inbox").text


def test_triage_bulk_spam_and_assign(rt: Runtime, desk: TestClient, session: Session) -> None:
    ids = [_triage(rt, session, subject=f"spam-{i}", sender=f"s{i}@spam.example") for i in range(3)]
    page = desk.get("/console/inbox").text
    token = csrf_of(page)
    handler = re.search(r'<option value="(\d+)">佐藤 花子</option>', page)
    assert handler
    answer = desk.post(
        "/console/inbox/bulk",
        data={
            "csrf_token": token,
            "action": "assign",
            "assignee_id": handler.group(1),
            "selected": [str(ids[0])],
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    answer = desk.post(
        "/console/inbox/bulk",
        data={"csrf_token": token, "action": "spam", "selected": [str(i) for i in ids[1:]]},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "count=2" in answer.headers["location"]
    with Session(rt.db) as s:
        rows = {r.id: r for r in s.exec(select(InboundMessage))}
    assert rows[ids[0]].status == "triage"
    assert rows[ids[0]].assignee_id == int(handler.group(1))
    assert all(rows[i].status == "dismissed" for i in ids[1:])
    with Session(rt.db) as s:
        assert (
            s.exec(select(OutboxMessage).where(OutboxMessage.recipient.like("%spam.example"))).all()
            == []
        )  # type: ignore[attr-defined]


def test_extend_the_due_date_with_a_reason(rt: Runtime, desk: TestClient) -> None:
    request = make_request(rt)
    page = _page(desk, request.id)
    assert 'id="action-extend"' in page
    data = {
        "csrf_token": csrf_of(page),
        "expected_version": str(request.version),
        "days": "7",
        "reason": "",
        "confirm_past_art39": "1",  # a week more passes the Art. 39 date of a 14-day request
    }
    empty = desk.post(f"/console/requests/{request.id}/extensions", data=data)
    assert empty.status_code == 422
    assert 'id="action-extend" open' in empty.text
    data["reason"] = "対象のサービスが複数あり、調査に時間を要するためです。"
    answer = desk.post(
        f"/console/requests/{request.id}/extensions", data=data, follow_redirects=False
    )
    assert answer.status_code == 303
    page = desk.get(answer.headers["location"]).text
    assert "回答予定日を延長しました" in page
    assert "回答予定日の延長" in page
    with Session(rt.db) as s:
        moved = s.get(Request, request.id)
        letter = s.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "deadline_extended")
        ).one()
    assert moved is not None
    assert moved.due_at > request.due_at
    assert moved.art39_date == request.art39_date
    assert "調査に時間を要する" in letter.body
    # A second extension past the workflow's limit is refused next to the field.
    data.update(csrf_token=csrf_of(page), expected_version=str(moved.version), days="14")
    over = desk.post(f"/console/requests/{request.id}/extensions", data=data)
    assert over.status_code == 422
    assert "at most 7 more days" in over.text


def test_fulfil_with_a_part_withheld_for_a_substantive_reason(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt, state="identity_verified")
    page = _page(desk, request.id)
    # The disclosure fee is paid first (the workflow discloses only once it is).
    assert "未入金 1,000円" in page
    paid = desk.post(
        f"/console/requests/{request.id}/payments",
        data={"csrf_token": csrf_of(page), "amount_jpy": "1000", "method": "bank_transfer"},
        follow_redirects=False,
    )
    assert paid.status_code == 303
    page = desk.get(paid.headers["location"]).text
    assert "入金を記録しました" in page
    assert "入金済み" in page
    fulfil = page.split('id="action-fulfill"')[1].split("</details>")[0]
    withheld = set(re.findall(r'<option value="([A-Z_]+)"', fulfil))
    assert withheld
    assert not any(code.startswith("PROC_") for code in withheld)
    fields = {
        "trigger": "fulfill",
        "summary": "登録情報を開示いたします。",
        "withheld_reason_code": "DISC_HARM_RIGHTS",
        "withheld_explanation": "第三者の個人情報を含む通話記録は開示できません。",
    }
    assert 'name="method_used"' in fulfil
    fields["method_used"] = "electronic"
    answer, preview = _decide(desk, request.id, page, **fields)  # type: ignore[misc]
    assert "第三者の個人情報を含む通話記録" in preview.text
    assert answer.status_code == 303
    with Session(rt.db) as s:
        letter = s.exec(select(OutboxMessage).where(OutboxMessage.letter == "fulfilled")).one()
        done = s.get(Request, request.id)
    assert done is not None
    assert done.state == "fulfilled"
    assert "第三者の個人情報を含む通話記録は開示できません。" in letter.body
    assert rt.definitions.reasons["DISC_HARM_RIGHTS"].statutory_text.ja in letter.body


def test_purge_removes_internal_notes_and_the_chain_still_verifies(
    rt: Runtime, desk: TestClient
) -> None:
    from dsrflow.requests.models import RequestNote
    from dsrflow.retention import purge

    request = make_request(rt, state="withdrawn")
    page = _page(desk, request.id)
    desk.post(
        f"/console/requests/{request.id}/notes",
        data={"csrf_token": csrf_of(page), "body": "本人の勤務先は株式会社サンプル。"},
    )
    with Session(rt.db) as s:
        assert len(s.exec(select(RequestNote)).all()) == 1
    done = purge(rt, now=datetime.now(UTC) + timedelta(days=rt.settings.retention_closed_days + 1))
    assert done.requests == [request.reference]
    with Session(rt.db) as s:
        assert s.exec(select(RequestNote)).all() == []
        assert verify_chains(s)[1] == []
