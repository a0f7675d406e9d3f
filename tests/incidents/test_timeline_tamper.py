"""Timeline integrity: edits, insertions, deletions and reorderings made through SQL behind the API's back are
detected by verify, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from tests.incidents.helpers import open_incident, timeline, verify
from tests.support import LiveServer


def _setup(server: LiveServer, notes: int = 6) -> tuple[Any, int]:
    c = server.client("responder", handle="rui")
    inc = open_incident(c)
    for i in range(notes):
        r = c.post(f"/v1/incidents/{inc['id']}/notes", json={"text": f"note {i}"})
        assert r.status_code == 201
    other = open_incident(c, title="another incident")  # its chain must stay intact whatever we do to the first
    c.post(f"/v1/incidents/{other['id']}/notes", json={"text": "unrelated"})
    v = verify(c, inc["id"])
    # other domains' hooks may add entries of their own when an incident opens
    assert v["ok"] and v["entries"] == len(timeline(c, inc["id"])) >= notes + 2 and v["problems"] == []
    return c, inc["id"]


def _sql(server: LiveServer, stmt: str, **params: Any) -> None:
    with server.rt.db.engine.begin() as conn:
        conn.execute(text(stmt), params)


def _max_seq(server: LiveServer, iid: int) -> int:
    with server.rt.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT max(seq) FROM timeline_entries WHERE incident_id=:i"), {"i": iid}).scalar_one())


def edit_text(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET text='all fine' WHERE incident_id=:i AND seq=4", i=iid)


def edit_actor(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET actor='mallory' WHERE incident_id=:i AND seq=3", i=iid)


def edit_time(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET time=time-3600 WHERE incident_id=:i AND seq=2", i=iid)


def edit_data(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET data=:d WHERE incident_id=:i AND seq=1", i=iid, d='{"severity": "SEV4"}')


def insert_middle(server: LiveServer, iid: int) -> None:
    # make room at seq 4 (shift 4.. up), then insert a forged row with a plausible MAC copied from another one
    n = _max_seq(server, iid)
    for seq in range(n, 3, -1):
        _sql(server, "UPDATE timeline_entries SET seq=:n WHERE incident_id=:i AND seq=:o", i=iid, n=seq + 1, o=seq)
    _sql(server, "INSERT INTO timeline_entries (incident_id, seq, time, actor, kind, text, data, mac) "
                 "SELECT incident_id, 4, time, actor, kind, 'forged', data, mac FROM timeline_entries "
                 "WHERE incident_id=:i AND seq=3", i=iid)


def insert_newest(server: LiveServer, iid: int) -> None:
    n = _max_seq(server, iid)
    _sql(server, "INSERT INTO timeline_entries (incident_id, seq, time, actor, kind, text, data, mac) "
                 "SELECT incident_id, :n, time, actor, kind, 'forged', data, mac FROM timeline_entries "
                 "WHERE incident_id=:i AND seq=:o", i=iid, n=n + 1, o=n)


def delete_middle(server: LiveServer, iid: int) -> None:
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i AND seq=4", i=iid)


def delete_middle_and_renumber(server: LiveServer, iid: int) -> None:
    n = _max_seq(server, iid)
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i AND seq=4", i=iid)
    for seq in range(5, n + 1):
        _sql(server, "UPDATE timeline_entries SET seq=:n WHERE incident_id=:i AND seq=:o", i=iid, n=seq - 1, o=seq)


def delete_newest(server: LiveServer, iid: int) -> None:
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i AND seq=:s", i=iid, s=_max_seq(server, iid))


def delete_newest_two(server: LiveServer, iid: int) -> None:
    n = _max_seq(server, iid)
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i AND seq>=:s", i=iid, s=n - 1)


def delete_newest_and_roll_head_back(server: LiveServer, iid: int) -> None:
    # the attacker also rewrites the head on the incident to the previous entry: the seal catches it
    n = _max_seq(server, iid)
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i AND seq=:s", i=iid, s=n)
    _sql(server, "UPDATE incidents SET chain_count=:c, chain_head=(SELECT mac FROM timeline_entries "
                 "WHERE incident_id=:i AND seq=:c) WHERE id=:i", i=iid, c=n - 1)


def reorder(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET seq=-1 WHERE incident_id=:i AND seq=3", i=iid)
    _sql(server, "UPDATE timeline_entries SET seq=3 WHERE incident_id=:i AND seq=4", i=iid)
    _sql(server, "UPDATE timeline_entries SET seq=4 WHERE incident_id=:i AND seq=-1", i=iid)


def move_to_other_incident(server: LiveServer, iid: int) -> None:
    _sql(server, "UPDATE timeline_entries SET incident_id=:o, seq=1000 WHERE incident_id=:i AND seq=5", i=iid, o=iid + 1)


def delete_everything(server: LiveServer, iid: int) -> None:
    _sql(server, "DELETE FROM timeline_entries WHERE incident_id=:i", i=iid)


TAMPERS: dict[str, tuple[Callable[[LiveServer, int], None], set[str]]] = {
    "edit_text": (edit_text, {"mac_mismatch"}),
    "edit_actor": (edit_actor, {"mac_mismatch"}),
    "edit_time": (edit_time, {"mac_mismatch"}),
    "edit_data": (edit_data, {"mac_mismatch"}),
    "insert_middle": (insert_middle, {"mac_mismatch", "count_mismatch"}),
    "insert_newest": (insert_newest, {"mac_mismatch", "count_mismatch"}),
    "delete_middle": (delete_middle, {"gap", "count_mismatch"}),
    "delete_middle_and_renumber": (delete_middle_and_renumber, {"mac_mismatch", "count_mismatch"}),
    "delete_newest": (delete_newest, {"count_mismatch", "head_mismatch"}),
    "delete_newest_two": (delete_newest_two, {"count_mismatch", "head_mismatch"}),
    "delete_newest_and_roll_head_back": (delete_newest_and_roll_head_back, {"seal_mismatch"}),
    "reorder": (reorder, {"mac_mismatch"}),
    "move_to_other_incident": (move_to_other_incident, {"gap", "count_mismatch"}),
    "delete_everything": (delete_everything, {"count_mismatch", "head_mismatch"}),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tamper_is_detected(quiet_server: LiveServer, name: str) -> None:
    server = quiet_server
    c, iid = _setup(server)
    tamper, expected = TAMPERS[name]
    tamper(server, iid)
    v = verify(c, iid)
    assert v["ok"] is False, v
    found = {p["problem"] for p in v["problems"]}
    assert expected <= found, (expected, v["problems"])
    for p in v["problems"]:
        assert p["detail"]
    if name != "move_to_other_incident":
        assert verify(c, iid + 1)["ok"]  # the other incident's chain is untouched


def test_untouched_chain_verifies_and_api_cannot_change_entries(quiet_server: LiveServer) -> None:
    server = quiet_server
    c, iid = _setup(server, notes=3)
    for method in ("PUT", "PATCH", "DELETE"):
        r = c.request(method, f"/v1/incidents/{iid}/timeline")
        assert r.status_code == 405
    assert verify(c, iid)["ok"]


def test_verify_with_wrong_key_fails(quiet_server: LiveServer) -> None:
    server = quiet_server
    """The MACs depend on the server key: a database copied to a server with another key does not verify."""
    from codeblue.incidents import service

    _c, iid = _setup(server, notes=2)
    rt = server.rt
    original = rt.server_key
    try:
        rt.server_key = b"another key entirely, 32 bytes.."
        with rt.db.read() as s:
            v = service.verify_timeline(s, rt, incident_id=iid)
    finally:
        rt.server_key = original
    assert not v["ok"] and {"mac_mismatch", "seal_mismatch"} <= {p["problem"] for p in v["problems"]}
