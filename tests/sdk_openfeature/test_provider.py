"""CodeblueProvider for openfeature-sdk, over a Guard connected to a real `codeblue` server on loopback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.provider import ProviderStatus

from codeblue.sdk import Guard
from codeblue.sdk.openfeature import CodeblueProvider
from tests.sdk.helpers import lift, set_control, test_guard, wait_for
from tests.support import LiveServer, ServerProcess, free_port


class Events:
    """Records the provider events a client's handlers receive."""

    def __init__(self, client: OpenFeatureClient) -> None:
        self.seen: list[tuple[ProviderEvent, EventDetails]] = []
        self._lock = threading.Lock()
        for ev in ProviderEvent:
            client.add_handler(ev, self._handler(ev))

    def _handler(self, ev: ProviderEvent) -> Any:
        def record(details: EventDetails) -> None:
            with self._lock:
                self.seen.append((ev, details))

        return record

    def kinds(self) -> list[ProviderEvent]:
        with self._lock:
            return [e for e, _ in self.seen]

    def count(self, ev: ProviderEvent) -> int:
        return self.kinds().count(ev)


@pytest.fixture
def domain() -> Iterator[str]:
    name = "codeblue-test-" + uuid.uuid4().hex[:8]
    yield name
    api.clear_providers()


def connect(guard: Guard, domain: str) -> tuple[CodeblueProvider, OpenFeatureClient]:
    provider = CodeblueProvider(guard, ready_timeout=10)
    api.set_provider_and_wait(provider, domain=domain)
    return provider, api.get_client(domain=domain)


def test_kill_switch_is_a_boolean_flag_with_the_control_in_variant_and_metadata(
    sqlite_server: LiveServer, tmp_path: Path, domain: str
) -> None:
    srv = sqlite_server
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        _, client = connect(g, domain)
        events = Events(client)
        assert client.get_provider_status() == ProviderStatus.READY
        wait_for(lambda: ProviderEvent.PROVIDER_READY in events.kinds(), what="READY delivered to the handler")
        d0 = client.get_boolean_details("refund-desk.issue_refund", False)
        assert d0.value is True and d0.variant == "allowed" and d0.error_code is None

        ctl = set_control(srv.client("responder"), "kill_switch", {"workflow": "refund-desk", "action": "issue_refund"},
                          {"fallback": "human_queue"}, reason="refunds to the wrong account")
        wait_for(lambda: not client.get_boolean_value("refund-desk.issue_refund", True),
                 what="the kill switch to reach the OpenFeature flag")
        d = client.get_boolean_details("refund-desk.issue_refund", True)
        assert d.value is False
        assert d.variant == f"kill_switch:{ctl['id']}"
        assert d.reason == "TARGETING_MATCH"
        assert d.flag_metadata["control_id"] == ctl["id"]
        assert d.flag_metadata["fallback"] == "human_queue"
        assert d.flag_metadata["reason"] == "refunds to the wrong account"
        assert d.flag_metadata["revision"] == ctl["revision"]
        wait_for(lambda: events.count(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED) >= 1,
                 what="CONFIGURATION_CHANGED for the new revision")
        changed = [det for e, det in events.seen if e == ProviderEvent.PROVIDER_CONFIGURATION_CHANGED]
        assert any(det.metadata.get("revision") == ctl["revision"] for det in changed)
        # other paths are untouched; the workflow-only key answers for the workflow as a whole
        assert client.get_boolean_value("refund-desk.lookup_order", False) is True
        assert client.get_boolean_value("billing.issue_refund", False) is True

        n_changed = events.count(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        lift(srv.client("responder"), ctl["id"])
        wait_for(lambda: client.get_boolean_value("refund-desk.issue_refund", False), what="the lift")
        wait_for(lambda: events.count(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED) > n_changed,
                 what="CONFIGURATION_CHANGED for the lift")
    finally:
        g.close()


def test_segment_tenant_and_traffic_come_from_the_evaluation_context(
    sqlite_server: LiveServer, tmp_path: Path, domain: str
) -> None:
    srv = sqlite_server
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        _, client = connect(g, domain)
        responder = srv.client("responder")
        seg = set_control(responder, "kill_switch",
                          {"workflow": "refund-desk", "action": "issue_refund", "segment": "refund_over_100"})
        traffic = set_control(responder, "traffic", {"workflow": "chat"}, {"admit": 0.5, "fallback": "static_answer", "target": "We are busy; try again shortly."})
        wait_for(lambda: g.revision >= traffic["revision"], what="both controls")
        big = EvaluationContext(targeting_key="acct-1", attributes={"segment": "refund_over_100"})
        small = EvaluationContext(targeting_key="acct-1", attributes={"segment": "refund_small"})
        d = client.get_boolean_details("refund-desk.issue_refund", True, big)
        assert d.value is False and d.flag_metadata["control_id"] == seg["id"]
        assert client.get_boolean_value("refund-desk.issue_refund", False, small) is True
        # traffic: per targeting key, the same answer as the Guard and stable across calls; both outcomes occur
        outcomes = {}
        for i in range(64):
            ctx = EvaluationContext(targeting_key=f"user-{i}")
            v = client.get_boolean_details("chat.reply", True, ctx)
            assert v.value == g.decide("chat", action="reply", key=f"user-{i}").allowed
            assert client.get_boolean_value("chat.reply", not v.value, ctx) == v.value
            outcomes[i] = v
        assert {v.value for v in outcomes.values()} == {True, False}
        blocked = next(v for v in outcomes.values() if not v.value)
        assert blocked.reason == "SPLIT" and blocked.flag_metadata["fallback"] == "static_answer"
        # a non-string scope attribute is a parse error, and the caller's default is returned
        bad = client.get_boolean_details("refund-desk.issue_refund", True, EvaluationContext(attributes={"tenant": 7}))
        assert bad.value is True and bad.error_code == ErrorCode.PARSE_ERROR
    finally:
        g.close()


def _push(c: httpx.Client, ident: str, version: str, content: Any) -> None:
    r = c.post(f"/v1/configs/{ident}/versions", json={"version": version, "content": content,
                                                       "workflows": ["refund-desk"]})
    assert r.status_code == 201, r.text


def _activate(c: httpx.Client, ident: str, version: str, fraction: float = 1.0) -> dict[str, Any]:
    r = c.post(f"/v1/configs/{ident}/activate", json={"version": version, "fraction": fraction})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_config_versions_are_string_flags_per_targeting_key(
    sqlite_server: LiveServer, tmp_path: Path, domain: str
) -> None:
    srv = sqlite_server
    responder = srv.client("responder")
    _push(responder, "prompt/refund-assistant", "v41", "You are a careful refund assistant.")
    _activate(responder, "prompt/refund-assistant", "v41")
    _push(responder, "routing_policy/refund-router", "r1", {"primary": "model-a", "backup": "model-b"})
    _activate(responder, "routing_policy/refund-router", "r1")
    g = test_guard(srv.url, srv.token("ingest", handle="bot"), tmp_path)
    try:
        _, client = connect(g, domain)
        events = Events(client)
        d = client.get_string_details("prompt/refund-assistant", "none", EvaluationContext(targeting_key="u1"))
        assert (d.value, d.variant, d.reason) == ("v41", "stable", "STATIC")
        obj = client.get_object_details("routing_policy/refund-router", {})
        assert obj.value == {"primary": "model-a", "backup": "model-b"} and obj.variant == "r1"

        _push(responder, "prompt/refund-assistant", "v42", "You are a refund assistant. Be brief.")
        ch = _activate(responder, "prompt/refund-assistant", "v42", fraction=0.5)
        wait_for(lambda: events.count(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED) >= 1,
                 what="CONFIGURATION_CHANGED for the rollout")
        wait_for(lambda: (g.config("prompt", "refund-assistant") or None) and
                 g.config("prompt", "refund-assistant", key="x") is not None, what="rollout in the snapshot")
        seen = set()
        for i in range(64):
            ctx = EvaluationContext(targeting_key=f"acct-{i}")
            det = client.get_string_details("prompt/refund-assistant", "none", ctx)
            cv = g.config("prompt", "refund-assistant", key=f"acct-{i}")
            assert cv is not None and det.value == cv.version
            assert det.variant == ("candidate" if cv.candidate else "stable")
            seen.add(det.value)
        assert seen == {"v41", "v42"}, ch

        # unknown configs and wrong types give the caller's default with an OpenFeature error code
        missing = client.get_string_details("prompt/nope", "fallback-version")
        assert missing.value == "fallback-version" and missing.error_code == ErrorCode.FLAG_NOT_FOUND
        malformed = client.get_string_details("no-slash", "d")
        assert malformed.value == "d" and malformed.error_code == ErrorCode.FLAG_NOT_FOUND
        as_bool = client.get_boolean_details("prompt/refund-assistant", True)
        assert as_bool.value is True and as_bool.error_code == ErrorCode.TYPE_MISMATCH
        as_int = client.get_integer_details("refund-desk.issue_refund", 3)
        assert as_int.value == 3 and as_int.error_code == ErrorCode.TYPE_MISMATCH
        text_as_obj = client.get_object_details("prompt/refund-assistant", {"x": 1})
        assert text_as_obj.value == {"x": 1} and text_as_obj.error_code == ErrorCode.TYPE_MISMATCH
    finally:
        g.close()


def test_stale_when_the_server_dies_and_ready_again_when_it_returns(tmp_path: Path, domain: str) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path}/codeblue.db"
    srv = ServerProcess(db, tmp_path / "data", port=port).start()
    g: Guard | None = None
    try:
        admin = srv.admin()
        r = admin.post("/v1/tokens", json={"handle": "bot", "roles": ["ingest"], "email": "bot@example.test"})
        r.raise_for_status()
        ingest = r.json()["token"]
        r = admin.post("/v1/tokens", json={"handle": "al", "roles": ["responder"], "email": "al@example.test"})
        r.raise_for_status()
        responder = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)
        ctl = set_control(responder, "kill_switch", {"workflow": "refund-desk", "action": "issue_refund"})

        g = test_guard(srv.url, ingest, tmp_path, stale_after=1.0)
        _, client = connect(g, domain)
        events = Events(client)
        assert client.get_boolean_value("refund-desk.issue_refund", True) is False

        srv.kill()
        wait_for(lambda: client.get_provider_status() == ProviderStatus.STALE, what="the provider to go STALE")
        # the SDK sets the status, then runs the handlers: the event follows the status, not with it
        wait_for(lambda: ProviderEvent.PROVIDER_STALE in events.kinds(), what="PROVIDER_STALE delivered")
        # still answering from the last snapshot while stale
        d = client.get_boolean_details("refund-desk.issue_refund", True)
        assert d.value is False and d.flag_metadata["control_id"] == ctl["id"] and d.flag_metadata["stale"] is True

        srv.start()  # same port, same database
        wait_for(lambda: client.get_provider_status() == ProviderStatus.READY, timeout=30,
                 what="the provider to be READY again after the server returned")

        def ready_after_stale() -> bool:
            kinds = events.kinds()
            last_ready = len(kinds) - 1 - kinds[::-1].index(ProviderEvent.PROVIDER_READY)
            return kinds.index(ProviderEvent.PROVIDER_STALE) < last_ready

        wait_for(ready_after_stale, what="PROVIDER_READY delivered after PROVIDER_STALE")
        assert client.get_boolean_details("refund-desk.issue_refund", True).flag_metadata["stale"] is False
    finally:
        if g is not None:
            g.close()
        srv.stop()


def test_server_unreachable_at_start_answers_from_defaults_then_catches_up(tmp_path: Path, domain: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    g = test_guard(url, "cb_not_yet", tmp_path, default="fail_closed", stale_after=1.0)
    srv: ServerProcess | None = None
    try:
        provider = CodeblueProvider(g, ready_timeout=0.2)
        api.set_provider_and_wait(provider, domain=domain)
        client = api.get_client(domain=domain)
        events = Events(client)
        d = client.get_boolean_details("refund-desk.issue_refund", True)
        assert d.value is False and d.reason == "DEFAULT" and d.flag_metadata["source"] == "default"
        wait_for(lambda: client.get_provider_status() == ProviderStatus.STALE, what="STALE while never confirmed")

        srv = ServerProcess(f"sqlite:///{tmp_path}/codeblue.db", tmp_path / "data", port=port)
        srv.admin_token = "cb_not_yet"  # the bootstrap admin token is what the guard already holds
        srv.env["CODEBLUE_BOOTSTRAP_TOKEN"] = "cb_not_yet"
        srv.start()
        wait_for(lambda: client.get_boolean_value("refund-desk.issue_refund", False), timeout=30,
                 what="the first snapshot to replace the fail-closed default")
        wait_for(lambda: client.get_provider_status() == ProviderStatus.READY, what="READY once caught up")
        wait_for(lambda: ProviderEvent.PROVIDER_CONFIGURATION_CHANGED in events.kinds(),
                 what="PROVIDER_CONFIGURATION_CHANGED delivered")
    finally:
        g.close()
        if srv is not None:
            srv.stop()


def test_shutdown_detaches_from_the_guard(tmp_path: Path, domain: str) -> None:
    g = test_guard(None, None, tmp_path)
    try:
        provider = CodeblueProvider(g, ready_timeout=0)
        api.set_provider_and_wait(provider, domain=domain)
        assert len(g._listeners) == 1
        api.clear_providers()
        wait_for(lambda: not g._listeners, what="the listener to be removed on shutdown")
        with pytest.raises(ValueError):
            CodeblueProvider(g, ready_timeout=-1)
    finally:
        g.close()
