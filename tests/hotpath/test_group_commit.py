"""Group commit (codeblue.store.group_commit) on each backend: concurrent writes share a transaction, keep their
order, and one failing write fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeblue.errors import NotFound
from codeblue.incidents import service
from codeblue.incidents.model import TimelineEntry
from codeblue.store.group_commit import GroupCommit
from tests.incidents.helpers import open_incident, timeline, verify
from tests.support import LiveServer


def _note(server: LiveServer, iid: int, text: str) -> Any:
    def write(s: Session) -> dict[str, Any]:
        return service.append_entry(s, server.rt, incident_id=iid, kind="note", text=text, actor="rui").as_dict()
    return write


def _count(server: LiveServer, iid: int, text_prefix: str) -> int:
    with server.rt.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(TimelineEntry).where(
            TimelineEntry.incident_id == iid, TimelineEntry.text.startswith(text_prefix))) or 0)


def test_concurrent_writes_share_rounds_in_order(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    a, b = open_incident(c)["id"], open_incident(c, title="second")["id"]
    gc = GroupCommit(server.rt.db, max_batch=16)

    async def go() -> list[dict[str, Any]]:
        return await asyncio.gather(*(gc.submit(_note(server, a if i % 3 else b, f"n{i:02d}")) for i in range(40)))

    got = asyncio.run(go())
    # all queued in the same turn of the loop: rounds of 16, 16 and 8
    assert (gc.rounds, gc.writes, gc.split_rounds) == (3, 40, 0)
    assert [e["text"] for e in got] == [f"n{i:02d}" for i in range(40)]
    for iid in (a, b):
        notes = [e for e in timeline(c, iid) if e["kind"] == "note"]
        assert [e["text"] for e in notes] == sorted(e["text"] for e in notes)  # arrival order is chain order
        assert [e["seq"] for e in notes] == sorted(e["seq"] for e in notes)
        v = verify(c, iid)
        assert v["ok"] and v["problems"] == []
    assert len({(e["incident_id"], e["seq"]) for e in got}) == 40


def test_a_failing_write_fails_alone(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    iid = open_incident(c)["id"]
    gc = GroupCommit(server.rt.db)

    async def go() -> list[Any]:
        fns = [_note(server, iid, "ok 1"), _note(server, 999_999, "lost"), _note(server, iid, "ok 2")]
        return await asyncio.gather(*(gc.submit(fn) for fn in fns), return_exceptions=True)

    first, bad, last = asyncio.run(go())
    assert isinstance(bad, NotFound)
    assert first["text"] == "ok 1" and last["text"] == "ok 2" and last["seq"] == first["seq"] + 1
    assert gc.split_rounds == 1
    assert _count(server, iid, "ok ") == 2 and _count(server, 999_999, "") == 0
    v = verify(c, iid)
    assert v["ok"], v


def test_an_exception_in_a_write_rolls_back_only_that_write(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    iid = open_incident(c)["id"]
    gc = GroupCommit(server.rt.db)

    def half_done(s: Session) -> None:
        service.append_entry(s, server.rt, incident_id=iid, kind="note", text="half", actor="rui")
        raise RuntimeError("boom after writing")

    async def go() -> list[Any]:
        return await asyncio.gather(gc.submit(_note(server, iid, "keep a")), gc.submit(half_done),
                                    gc.submit(_note(server, iid, "keep b")), return_exceptions=True)

    a, boom, b = asyncio.run(go())
    assert isinstance(boom, RuntimeError) and str(boom) == "boom after writing"
    assert a["text"] == "keep a" and b["text"] == "keep b"
    assert _count(server, iid, "half") == 0 and _count(server, iid, "keep ") == 2
    assert verify(c, iid)["ok"]


def test_max_batch_must_be_positive(server: LiveServer) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(server.rt.db, max_batch=0)


def test_appends_in_one_transaction_survive_a_rolled_back_savepoint(server: LiveServer) -> None:
    """Later appends in a transaction reuse the head the earlier ones wrote; a savepoint rolled back in between
    must not leave them chaining onto an entry that no longer exists."""
    c = server.client("responder", handle="rui")
    iid = open_incident(c)["id"]
    with server.rt.db.write() as s:
        _note(server, iid, "before")(s)
        try:
            with s.begin_nested():
                _note(server, iid, "undone 1")(s)
                _note(server, iid, "undone 2")(s)
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
        _note(server, iid, "after 1")(s)
        with s.begin_nested():
            _note(server, iid, "kept in savepoint")(s)
        _note(server, iid, "after 2")(s)
    texts = [e["text"] for e in timeline(c, iid) if e["kind"] == "note"]
    assert texts == ["before", "after 1", "kept in savepoint", "after 2"]
    v = verify(c, iid)
    assert v["ok"] and v["problems"] == [], v


def _append_notes(s: Session, items: list[tuple[LiveServer, service.NoteIn]]) -> list[Any]:
    out = service.append_batch(s, items[0][0].rt, [n for _, n in items])
    return [e if isinstance(e, BaseException) else e.as_dict() for e in out]


def test_batched_appends_share_a_round_and_an_unknown_incident_fails_alone(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    a, b = open_incident(c)["id"], open_incident(c, title="second")["id"]
    gc = GroupCommit(server.rt.db)
    plan = [(a if i % 4 else b, f"m{i:02d}") for i in range(30)]
    plan.insert(7, (999_999, "nowhere"))

    async def go() -> list[Any]:
        jobs = [gc.submit_batched(_append_notes, (server, service.NoteIn(iid, "note", text, "rui")))
                for iid, text in plan]
        jobs.insert(12, gc.submit(_note(server, a, "opaque write in the same round")))
        return await asyncio.gather(*jobs, return_exceptions=True)

    got = asyncio.run(go())
    assert (gc.rounds, gc.split_rounds) == (1, 0)  # the unknown incident did not split the round
    assert isinstance(got[7], NotFound)
    assert got[12]["text"] == "opaque write in the same round"
    ok = [g for i, g in enumerate(got) if i not in (7, 12)]
    assert [g["text"] for g in ok] == [t for iid, t in plan if iid != 999_999]
    for iid in (a, b):
        mine = [g for g in ok if g["incident_id"] == iid]
        assert [g["seq"] for g in mine] == sorted(g["seq"] for g in mine)
        notes = [e for e in timeline(c, iid) if e["kind"] == "note"]
        assert len(notes) == len(mine) + (1 if iid == a else 0)
        v = verify(c, iid)
        assert v["ok"] and v["problems"] == [], v
    assert _count(server, 999_999, "") == 0


def test_a_batch_after_a_single_append_in_the_same_transaction_continues_its_chain(server: LiveServer) -> None:
    c = server.client("responder", handle="rui")
    iid = open_incident(c)["id"]
    with server.rt.db.write() as s:
        _note(server, iid, "single")(s)
        service.append_batch(s, server.rt, [service.NoteIn(iid, "note", f"batch {i}", "rui") for i in range(3)])
        _note(server, iid, "single again")(s)
    texts = [e["text"] for e in timeline(c, iid) if e["kind"] == "note"]
    assert texts == ["single", "batch 0", "batch 1", "batch 2", "single again"]
    assert verify(c, iid)["ok"]


def test_a_lone_failing_write_is_still_counted(server: LiveServer) -> None:
    gc = GroupCommit(server.rt.db)

    def boom(_s: Session) -> None:
        raise NotFound("no incident 999999", field="incident_id")

    with pytest.raises(NotFound):
        asyncio.run(gc.submit(boom))
    assert (gc.rounds, gc.writes, gc.split_rounds) == (1, 1, 0)
