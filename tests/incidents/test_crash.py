"""Crash safety: SIGKILL the server while clients append; every acknowledged entry survives and the chain verifies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.incidents.helpers import open_incident, timeline, verify
from tests.support import ServerProcess


def test_sigkill_during_appends_keeps_every_acknowledged_entry(db_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    srv = ServerProcess(db_url, data_dir).start()
    acked: dict[int, list[str]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with srv.admin() as admin:
            incidents = [open_incident(admin, title=f"incident {i}")["id"] for i in range(2)]

        def writer(n: int) -> None:
            iid = incidents[n % len(incidents)]
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_token}"},
                              timeout=5) as c:
                i = 0
                while not stop.is_set():
                    text = f"w{n}-{i}"
                    i += 1
                    try:
                        r = c.post(f"/v1/incidents/{iid}/notes", json={"text": text})
                    except httpx.HTTPError:
                        return  # the server died mid-request: not acknowledged, may or may not be stored
                    if r.status_code == 201:
                        with lock:
                            acked.setdefault(iid, []).append(text)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for real progress before pulling the plug
            with lock:
                if sum(len(v) for v in acked.values()) >= 150:
                    break
            time.sleep(0.01)
        srv.kill()  # SIGKILL: no shutdown, no flush
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        srv.kill()

    assert sum(len(v) for v in acked.values()) >= 150
    srv2 = ServerProcess(db_url, data_dir, port=srv.port).start()
    try:
        srv2.admin_token = srv.admin_token
        with srv2.admin() as admin:
            for iid in incidents:
                stored = [e["text"] for e in timeline(admin, iid) if e["kind"] == "note"]
                missing = set(acked.get(iid, [])) - set(stored)
                assert not missing, f"acknowledged entries lost after SIGKILL: {sorted(missing)[:5]}"
                assert len(stored) == len(set(stored))
                v = verify(admin, iid)
                assert v["ok"], v["problems"]
                # the chain keeps growing correctly after the restart
                assert admin.post(f"/v1/incidents/{iid}/notes", json={"text": "after restart"}).status_code == 201
                assert verify(admin, iid)["ok"]
    finally:
        srv2.stop()
