"""The law the definitions must keep: fixed facts of the APPI, not the privacy officer's to edit.

``workflows/`` says which provision each request type answers (a workflow's ``article``, e.g.
``"35(1), 35(5)"``) and which provision each reason rests on (a reason's ``article``, e.g.
``"33(2)(i)"``). This module knows what the Act attaches to those provisions, so that a file can
change a deadline or a letter but never give a correction a fee, switch off Art. 39 for a
disclosure, or put a disclosure ground on a correction. It works on articles only: it knows no
request type by name, so it holds for any catalog whose reasons cite their provisions.

``review`` is called once, from ``load_definitions``: its errors stop the program from starting
(and make ``dsrflow workflows check`` fail); its warnings are printed by the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the calendar module imports the definitions that import this one
    from dsrflow.workflow.calendar import BusinessCalendar
    from dsrflow.workflow.definitions import LegalReason, WorkflowDef

# A provision of the Act: (article, paragraph); paragraph None means the article as a whole.
Provision = tuple[int, int | None]

# Art. 37(1): the requests (disclosure and the rest) the business must accept, by the provision that
# grants each: purpose notice 32(2), disclosure 33(1), third-party provision records 33(5),
# correction 34(1), suspension of use or erasure 35(1), cessation of third-party provision 35(3),
# and either of the last two on the grounds of 35(5).
REQUESTS: frozenset[Provision] = frozenset(
    {(32, 2), (33, 1), (33, 5), (34, 1), (35, 1), (35, 3), (35, 5)}
)
# Art. 38(1): a fee only for a purpose notice (32(2)) and a disclosure (33(1), which by the
# parenthetical of Art. 37(1) includes the records of 33(5)).
FEE_ALLOWED: frozenset[Provision] = frozenset({(32, 2), (33, 1), (33, 5)})
# Art. 39(1): no suit before two weeks from arrival, for 33(1) (with 33(5)), 34(1) and
# 35(1)/(3)/(5); not for a purpose notice.
ART39_COVERS: frozenset[Provision] = frozenset(
    {(33, 1), (33, 5), (34, 1), (35, 1), (35, 3), (35, 5)}
)
# The article of the fee (Art. 38): a reason resting on it fits only a workflow that charges one.
FEE_ARTICLE = 38
# Procedural grounds (Arts. 37 and 38) may be cited before identity is verified; no other may.
PROCEDURAL_ARTICLES = frozenset({37, 38})
# States in which only a procedural ground may be cited (DESIGN.md: `refuse` from `received` and
# `awaiting_requester` takes only the PROC_* codes).
PROCEDURAL_ONLY_STATES = ("received", "awaiting_requester")

_DISCLOSURE = frozenset({(33, 1), (33, 5)})
_SUSPENSION = frozenset({(35, 1)})
_CESSATION = frozenset({(35, 3)})
_PARA5 = frozenset({(35, 5)})
# The family of each ground: which requests a reason citing that provision can answer. Keyed by
# (article, paragraph), with (article, None) for every paragraph of the article.
FAMILIES: Mapping[Provision, frozenset[Provision]] = {
    # Retained personal data and personal data are defined here; every request is about them.
    (16, None): REQUESTS,
    # Purposes exempt from notice (applied to purpose notices by 32(2)(ii)).
    (21, 4): frozenset({(32, 2)}),
    (32, 2): frozenset({(32, 2)}),
    (32, 3): frozenset({(32, 2)}),
    (33, 1): _DISCLOSURE,
    (33, 2): _DISCLOSURE,
    (33, 3): _DISCLOSURE,
    # Art. 33(5) applies only paras. 1-3 to records: another law's disclosure route is for 33(1).
    (33, 4): frozenset({(33, 1)}),
    (33, 5): frozenset({(33, 5)}),
    (34, None): frozenset({(34, 1)}),
    (35, 1): _SUSPENSION,
    (35, 2): _SUSPENSION,
    (35, 3): _CESSATION,
    (35, 4): _CESSATION,
    (35, 5): _PARA5,
    (35, 6): _PARA5,
    (35, 7): _SUSPENSION | _CESSATION | _PARA5,
    (36, None): REQUESTS,
    (37, None): REQUESTS,
    (38, None): FEE_ALLOWED,
}

# "33(2)(i)", "35(1)-(4)", "(6) proviso", "38", "21(4)(i)-(iii)"; "Cabinet Order 11" and
# "Guideline 3-8-3" are not provisions of the Act and are skipped.
_CITATION = re.compile(
    r"^(?P<article>\d+)?(?:\((?P<para>\d+)\))?(?:\([ivx]+\))*(?:-\((?P<to>\d+)\))?"
)
# How far ahead a business-day deadline is tried against the Art. 39 date (holidays move).
WARNING_HORIZON_DAYS = 2 * 366


def provisions(article: str) -> list[Provision]:
    """The provisions of the Act an ``article`` field cites, in order.

    ``"35(2),(4),(6) proviso"`` -> 35(2), 35(4), 35(6); ``"35(1)-(4)"`` -> 35(1) to 35(4);
    ``"38, Cabinet Order 12(iv)"`` -> 38.
    """
    cited: list[Provision] = []
    current: int | None = None
    for part in article.split(","):
        part = part.strip()
        match = _CITATION.match(part)
        if not part or not (part[0].isdigit() or part[0] == "(") or match is None:
            current = None  # "Cabinet Order 5", "Guideline 3-8-3": not the Act
            continue
        if match["article"]:
            current = int(match["article"])
        if current is None:
            continue
        if match["para"] is None:
            cited.append((current, None))
            continue
        first = int(match["para"])
        last = int(match["to"]) if match["to"] else first
        cited.extend((current, para) for para in range(first, max(first, last) + 1))
    return cited


def family(cited: Iterable[Provision]) -> frozenset[Provision] | None:
    """The requests the grounds ``cited`` can answer; None if one of them is not in the table."""
    requests: set[Provision] = set()
    for article, para in cited:
        found = FAMILIES.get((article, para), FAMILIES.get((article, None)))
        if found is None:
            return None
        requests |= found
    return frozenset(requests)


def _show(cited: Iterable[Provision]) -> str:
    return ", ".join(f"{a}({p})" if p is not None else str(a) for a, p in sorted(cited))


def charges_fee(wf: WorkflowDef) -> bool:
    return wf.fee is not None and wf.fee.amount_jpy > 0


def review(
    workflows: Mapping[str, WorkflowDef],
    paths: Mapping[str, Path],
    reasons: Mapping[str, LegalReason],
    catalog_path: Path,
    calendar: BusinessCalendar,
) -> tuple[list[str], list[str]]:
    """Check the loaded definitions against the Act: (errors, warnings), naming file and key."""
    errors: list[str] = []
    warnings: list[str] = []
    answers: dict[str, set[Provision]] = {}
    for request_type, wf in workflows.items():
        path = paths[request_type]
        cited = set(provisions(wf.article))
        if not cited or not cited <= REQUESTS:
            errors.append(
                f"{path}: article: '{wf.article}' is not a request of Art. 37(1) "
                f"(one or more of {_show(REQUESTS)})"
            )
            continue
        answers[request_type] = cited
        if charges_fee(wf) and not cited <= FEE_ALLOWED:
            errors.append(
                f"{path}: fee: Art. 38(1) allows a fee only for a purpose notice (32(2)) or a "
                f"disclosure (33(1), 33(5)), not for a request under {wf.article}"
            )
        if wf.fee is not None and FEE_ARTICLE not in {a for a, _ in provisions(wf.fee.article)}:
            errors.append(f"{path}: fee.article: '{wf.fee.article}' must cite Art. 38")
        if cited & ART39_COVERS and not wf.deadline.art39:
            errors.append(
                f"{path}: deadline.art39: must be true: Art. 39 covers a request under "
                f"{wf.article} (the requester may sue two weeks after it arrives)"
            )
        if wf.deadline.art39:
            warnings.extend(_deadline_warnings(path, wf, calendar))

    for code, reason in reasons.items():
        where = f"{catalog_path}: reasons.{code}"
        cited_grounds = provisions(reason.article)
        fits = family(cited_grounds) if cited_grounds else None
        if fits is None:
            errors.append(
                f"{where}.article: '{reason.article}' cites no provision of the Act whose "
                f"requests dsrflow knows (known: {_show(FAMILIES)})"
            )
            continue
        articles = {a for a, _ in cited_grounds}
        for request_type in reason.types:
            if request_type not in answers:
                continue  # unknown type or bad article: reported elsewhere
            wf = workflows[request_type]
            if not answers[request_type] & fits:
                errors.append(
                    f"{where}.types: '{request_type}' is a request under {wf.article}, outside "
                    f"the family of {reason.article} (it answers requests under {_show(fits)})"
                )
            elif (FEE_ARTICLE in articles or reason.requires_fee) and not charges_fee(wf):
                errors.append(
                    f"{where}.types: '{request_type}' charges no fee "
                    f"({paths[request_type].name} fee), so a fee ground (Art. 38) cannot fit it"
                )
        if FEE_ARTICLE in articles and not reason.requires_fee:
            errors.append(
                f"{where}.requires_fee: must be true for a ground under Art. 38 (it fits only "
                "while no payment covers the fee)"
            )
        if articles & PROCEDURAL_ARTICLES:
            if "withheld" in reason.uses:
                errors.append(
                    f"{where}.uses: 'withheld': a procedural ground ({reason.article}) refuses "
                    "a request as a whole; it is never a withheld part of a fulfilment"
                )
        else:
            for state in reason.states:
                if state in PROCEDURAL_ONLY_STATES:
                    errors.append(
                        f"{where}.states: '{state}': only a procedural ground (Arts. 37, 38) "
                        f"may be cited before identity is verified; {reason.article} is not one"
                    )
    return errors, warnings


def _deadline_warnings(path: Path, wf: WorkflowDef, calendar: BusinessCalendar) -> list[str]:
    """Where the internal target (alone, then with the longest extension) can reach the Art. 39
    date, the first day the requester may sue: one warning naming the key that does it."""
    deadline = wf.deadline
    late = _first_late_arrival(calendar, wf, extra_days=0)
    key, what = "deadline.days", f"{deadline.days} {deadline.counting} days"
    if late is not None:
        # The service cuts such a target back to the day before, unless the workflow confirms.
        then = (
            "deadline.confirm_past_art39 is true, so it stays there"
            if deadline.confirm_past_art39
            else "it is cut back to the day before unless deadline.confirm_past_art39 is true"
        )
    elif deadline.extension_max_days:
        late = _first_late_arrival(calendar, wf, extra_days=deadline.extension_max_days)
        key = "deadline.extension_max_days"
        what = f"an extension of {deadline.extension_max_days} {deadline.counting} days"
        then = "a handler must confirm such an extension with confirm_past_art39"
    if late is None:
        return []
    arrival, due, art39 = late
    return [
        f"{path}: {key}: {what} can put the target on or after the Art. 39 date, when the "
        f"requester may already sue (arriving {arrival}: due {due}, Art. 39 date {art39}); "
        f"{then}"
    ]


def _first_late_arrival(
    calendar: BusinessCalendar, wf: WorkflowDef, extra_days: int
) -> tuple[date, date, date] | None:
    deadline = wf.deadline
    start = datetime.now(calendar.tz).date()
    horizon = 1 if deadline.counting == "calendar" else WARNING_HORIZON_DAYS
    for offset in range(horizon):
        arrival = start + timedelta(days=offset)
        due = calendar.add_days(arrival, deadline.days, deadline.counting)
        if extra_days:
            due = calendar.add_days(due, extra_days, deadline.counting)
        art39 = calendar.art39_date(calendar.end_of(arrival))
        if due >= art39:
            return arrival, due, art39
    return None
