"""The story driver: sets up the emergency room through the public API, runs the simulated assistant, and
plays the people — and only the people. Detection, triage, paging, containment, rollback, reminders and the
post-mortem happen by themselves on the server; the driver watches for their effects and judges each step by
what the application and the receivers saw.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from codeblue.demo.assistant import SupportAssistant
from codeblue.demo.clock import StreamClock
from codeblue.demo.embedded import EmbeddedServer, free_port
from codeblue.demo.scenarios import SCENARIOS, DemoScenario
from codeblue.demo.sinks import Delivery, Inbox, MailSink, WebhookSink
from codeblue.demo.view import View

#: Stream seconds of normal traffic before the rollout: the vitals monitor judges a workflow after 30 minutes.
WARMUP_S = 33 * 60
#: How long (stream) the story waits for each thing that must happen by itself before calling it missing.
DETECT_WITHIN_S = 20 * 60
CONTAIN_WITHIN_S = 10 * 60
RECOVER_WITHIN_S = 45 * 60
#: The recovery's verify condition: a stage fails when more than this share of the admitted answers are wrong.
#: Healthy is about 4 %, the bad version served about 30 %: a limit between them that a small sample of
#: healthy answers does not cross by chance (20 answers at 4 %: P(> 15 %) < 1 %).
RECOVERY_BELOW = 0.15

PEOPLE: list[dict[str, Any]] = [
    {"handle": "fay", "name": "Fay Okafor", "roles": ["lead"], "what": "feature owner (refunds & finance answers)"},
    {"handle": "ian", "name": "Ian Brandt", "roles": ["responder"], "what": "infrastructure on call"},
    {"handle": "oli", "name": "Olivia Chen", "roles": ["responder"], "what": "support operations"},
    {"handle": "cam", "name": "Camille Roux", "roles": ["responder"], "what": "communications rota"},
    {"handle": "ria", "name": "Ria Patel", "roles": ["responder", "risk_owner"], "what": "risk owner"},
    {"handle": "dan", "name": "Dan Fischer", "roles": ["responder"], "what": "release engineer"},
]

SCHEDULES: list[dict[str, Any]] = [
    {"name": "feature", "domain": "feature", "members": ["fay"]},
    {"name": "infra", "domain": "infra", "members": ["ian"]},
    {"name": "ops", "domain": "ops", "members": ["oli"]},
    {"name": "ops-rota", "domain": "ops", "workflow": "comms-rota", "members": ["cam"]},
    {"name": "risk", "domain": "risk", "members": ["ria"]},
]


class StoryError(Exception):
    """The server refused something the people asked for."""


@dataclass
class Check:
    name: str
    ok: bool
    evidence: str


@dataclass
class Figures:
    rollout_t: float | None = None
    opened_t: float | None = None
    contained_t: float | None = None  # when the app's Guard first blocked a refund / served the rolled-back version
    contained_wall: float | None = None
    control_wall: float | None = None  # when the server wrote the containment, on the wall clock
    recovery_started_t: float | None = None
    monitoring_t: float | None = None
    resolved_t: float | None = None
    incident: dict[str, Any] = field(default_factory=dict)
    postmortem: dict[str, Any] = field(default_factory=dict)
    postmortem_path: Path | None = None


class Person:
    """A human with their own token, acting through the HTTP API."""

    def __init__(self, url: str, handle: str, name: str, token: str) -> None:
        self.handle = handle
        self.name = name
        self.token = token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise StoryError(f"{self.handle}: {method} {path} → {r.status_code}: {detail}")
        if r.status_code == 204 or not r.content:
            return None
        ctype = r.headers.get("content-type", "")
        return r.json() if "json" in ctype else r.text

    def close(self) -> None:
        self.http.close()


class Story:
    """One run of the demo. `run()` returns the process exit code (0: every step happened)."""

    def __init__(self, *, scenario: str = "refund-prompt", speed: float = 30.0, port: int | None = None,
                 console: Console | None = None, keep: bool = False, data_dir: Path | None = None,
                 seed: int = 7) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        self.sc: DemoScenario = SCENARIOS[scenario]
        self.speed = speed
        self.port = port
        self.console = console or Console()
        self.keep = keep
        self.seed = seed
        self.dir = data_dir or Path(tempfile.mkdtemp(prefix="codeblue-demo-"))
        self.inbox = Inbox()
        self.checks: list[Check] = []
        self.figures: dict[str, Any] = {}
        self.fig = Figures()
        self.people: dict[str, Person] = {}
        self.server: EmbeddedServer | None = None
        self.app: SupportAssistant | None = None
        self.clock: StreamClock | None = None
        self.view: View | None = None
        self._mail: MailSink | None = None
        self._hooks: WebhookSink | None = None
        self._seen_seq = 0
        self._reminders_seen = 0
        self._last_follow = 0.0
        self._done: set[str] = set()
        self.incident_id: int | None = None

    def close(self) -> None:
        """Stop the assistant (flushing its events), the people's clients, the server and the receivers."""
        if self.app is not None:
            self.app.stop()
        for p in self.people.values():
            p.close()
        if self.server is not None:
            self.server.stop()
        if self._mail is not None:
            self._mail.stop()
        if self._hooks is not None:
            self._hooks.stop()

    # ----- helpers ------------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        assert self.clock is not None
        return self.clock.server_now()

    def say(self, text: str, style: str = "system", t: float | None = None) -> None:
        assert self.view is not None
        self.view.line(self.now if t is None else t, text, style)

    def check(self, name: str, ok: bool, evidence: str) -> bool:
        self.checks.append(Check(name, ok, evidence))
        self.say(("✔ " if ok else "✘ ") + f"{name}: {evidence}", "ok" if ok else "fail")
        return ok

    def _vitals(self) -> list[tuple[str, float | None, int, bool]]:
        assert self.app is not None
        out = []
        now = self.now
        for wf in self.app.workflows:
            rate, n = self.app.ledger.bad_rate(wf.name, now - 300, now)
            base = wf.rates.ungrounded
            out.append((wf.name, rate, n, rate is not None and n >= 20 and rate > 2.5 * base))
        return out

    def _phase(self, name: str) -> None:
        assert self.view is not None and self.app is not None
        lag = self.app.lag
        self.view.tick(self.now, name + (f" · traffic {lag:.0f}s behind" if lag > 5 else ""), self._vitals())

    def wait_until(self, what: str, cond: Callable[[], bool], *, within_s: float, phase: str,
                   poll: float = 0.2) -> bool:
        """Wait (stream time) for `cond`, keeping the view and the timeline going and the people reacting."""
        deadline = self.now + within_s
        last_view = 0.0
        while True:
            if cond():
                return True
            if self.now > deadline:
                self.say(f"{what}: did not happen within {within_s / 60:.0f} min of stream time", "fail")
                return False
            if self.server is not None and not self.server.alive():
                raise StoryError("the codeblue server exited; its log: " + self.server.tail())
            self._react()
            if time.time() - last_view > 0.12:
                self._phase(phase)
                last_view = time.time()
            time.sleep(poll)

    # ----- setup ----------------------------------------------------------------------------------------------

    def _comms_config(self, webhook: WebhookSink) -> Path:
        cfg = {
            "audiences": {"internal": ["slack"], "status_page": ["webhook:statuspage"],
                          "support": ["email"], "executive": ["email"]},
            "recipients": {"support": ["support-leads@demo.codeblue.test"],
                           "executive": ["exec-brief@demo.codeblue.test"]},
            "reminders": {"channel": "email", "to": ["comms-fallback@demo.codeblue.test"], "escalate_after": "5m"},
            "status_page": {
                "title": "Acme Support Assistant status",
                "components": [
                    {"workflow": "refund-desk", "name": "Refund assistant"},
                    {"workflow": "finance-qa", "name": "Finance answers"},
                    {"workflow": "support-desk", "name": "Support tickets"},
                ],
            },
        }
        path = self.dir / "comms.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(16)
        self._mail = MailSink(self.inbox, free_port())
        self._hooks = WebhookSink(self.inbox, free_port(), secret)
        self._mail.start()
        self._hooks.start()
        self.inbox.listeners.append(self._on_delivery)
        comms = self._comms_config(self._hooks)
        self.server = EmbeddedServer(self.dir / "server", speed=self.speed, port=self.port,
                                     env={"CODEBLUE_COMMS_CONFIG": str(comms)})
        self.server.start()
        url = self.server.url
        admin = Person(url, "admin", "Administrator", self.server.admin_token)
        self.people["admin"] = admin
        for p in PEOPLE:
            tok = admin.call("POST", "/v1/tokens", json={
                "handle": p["handle"], "name": p["name"], "email": f"{p['handle']}@demo.codeblue.test",
                "roles": p["roles"]})
            self.people[p["handle"]] = Person(url, p["handle"], p["name"], tok["token"])
        app_token = admin.call("POST", "/v1/tokens", json={"handle": "support-bot", "name": "Support assistant",
                                                          "roles": ["ingest"]})["token"]
        # channels: pages and reminders by e-mail to the local SMTP sink; chat and status-page webhooks
        admin.call("POST", "/v1/comms/channels", json={
            "name": "email", "host": "127.0.0.1", "port": self._mail.port, "from": "codeblue@demo.codeblue.test",
            "timeout": 5})
        admin.call("POST", "/v1/comms/channels", json={"name": "webhook:statuspage",
                                                      "url": self._hooks.url("statuspage"), "secret": secret,
                                                      "timeout": 5})
        # the incident chat: a Slack-compatible incoming webhook (the runbooks' `notify` steps post there)
        admin.call("POST", "/v1/comms/channels", json={"name": "slack", "url": self._hooks.url("slack"),
                                                      "username": "codeblue", "timeout": 5})
        lead = self.people["fay"]
        start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        for sch in SCHEDULES:
            body = {k: v for k, v in sch.items() if k != "members"}
            body["timezone"] = "UTC"
            body["layers"] = [{"name": "primary", "rotation": "weekly", "handoff": "00:00", "start": start,
                               "members": sch["members"]}]
            lead.call("POST", "/v1/oncall/schedules", json=body)
        lead.call("POST", "/v1/oncall/policies", json={
            "name": "default", "repeat": 1,
            "levels": [{"target": "feature", "timeout_minutes": 5}, {"target": "infra", "timeout_minutes": 5}]})
        # the assistant's configs, as the release engineer ships them
        dan = self.people["dan"]
        for wf in self.sc.workflows():
            for key, version in wf.configs.items():
                kind, name = key.split("/", 1)
                dan.call("POST", f"/v1/configs/{kind}/{name}/versions",
                         json={"version": version, "content": f"{name} {version}", "workflows": [wf.name]})
                dan.call("POST", f"/v1/configs/{kind}/{name}/activate", json={"version": version})
        sc = self.sc
        dan.call("POST", f"/v1/configs/{sc.kind}/{sc.config}/versions",
                 json={"version": sc.bad, "content": f"{sc.config} {sc.bad}: rewritten for tone and brevity",
                       "workflows": [sc.workflow]})
        with httpx.Client(base_url=url, timeout=5.0) as c:
            self.clock = StreamClock.sync(c, self.speed)
        self.app = SupportAssistant(url=url, token=app_token, clock=self.clock, scenario=sc, seed=self.seed)

    # ----- the people react to what reaches them ------------------------------------------------------------

    def _on_delivery(self, d: Delivery) -> None:
        if self.view is None or self.clock is None:
            return
        who = ", ".join(d.to) if d.to else d.via
        style = "people" if d.kind == "page" else "comms"
        self.view.line(self.now, f"✉ {d.kind} delivered ({d.via} → {who}): {d.subject.strip()[:100]}", style)

    def _react(self) -> None:
        """One round of the people's reactions and of following the incident's timeline."""
        if self.incident_id is None or time.time() - self._last_follow < 0.15:
            return
        self._last_follow = time.time()
        self._follow_timeline()
        inc_id = self.incident_id
        pages = self.inbox.select(kind="page", incident_id=inc_id)
        fay, cam, oli = self.people["fay"], self.people["cam"], self.people["oli"]
        if pages and "ack" not in self._done:
            self._done.add("ack")
            self._acknowledge(pages)
        inc = self.fig.incident
        if "ack" in self._done and "internal1" not in self._done and inc.get("roles", {}).get("communications_lead"):
            self._done.add("internal1")
            self._publish(cam, "internal", {
                "summary": f"{inc.get('title')}: the vitals monitor opened this {inc.get('severity')} "
                           f"{inc.get('failure_type')} incident; the runbook is containing it.",
                "impact": self._harm_text(inc), "actions": "runbook containment in force; audit of served "
                "answers started", "next_update": "in 10 minutes"})
        if "ack" in self._done and "impact" not in self._done:
            self._done.add("impact")
            fay.call("POST", f"/v1/incidents/{inc_id}/milestones", json={"name": "impact_confirmed"})
            self.say(f"fay confirms user impact: {self._harm_text(inc)}", "people")
        if "impact" in self._done and "status1" not in self._done:
            self._done.add("status1")
            self._publish(cam, "status_page", self._status_facts("identified"))
            self.say(f"status page: {self.server.url if self.server else ''}/status", "comms")
        if inc.get("milestones", {}).get("mitigation_chosen") and "support" not in self._done:
            self._done.add("support")
            self._publish(oli, "support", {
                "feature": self.sc.feature, "alternatives": self.sc.alternatives,
                "actions": f"Mitigation chosen: {inc.get('mitigation_path') or 'runbook'}; affected cases are "
                           "routed to the human queue.",
                "status_url": f"{self.server.url if self.server else ''}/status",
                "customer_message": self.sc.customer_message})
        # Once the mitigation path is chosen the lead can give an ETA; scope and ETA known → executive brief.
        if "support" in self._done and "eta" not in self._done:
            self._done.add("eta")
            eta = self.now + 45 * 60
            fay.call("POST", f"/v1/incidents/{inc_id}/milestones", json={"name": "eta", "data": {"eta": eta}})
            self.say(f"fay sets the ETA for full recovery: {time.strftime('%H:%M', time.gmtime(eta))} UTC", "people")
        if "eta" in self._done and "executive" not in self._done:
            self._done.add("executive")
            self._publish(cam, "executive", {
                "impact": self._harm_text(inc) + f" on {self.sc.workflow} since the rollout of "
                          f"{self.sc.config_key} {self.sc.bad}",
                "eta": "verified recovery within 45 minutes",
                "actions": "contained by the runbook; the rollout is rolled back; served answers under audit",
                "risk": "customers who acted on wrong answers need follow-up",
                "decision_needed": "none"})
        # Reminders reach the communications lead (and, escalated, the incident lead): they publish what is due.
        reminders = self.inbox.select(kind="reminder", incident_id=inc_id)
        if len(reminders) > self._reminders_seen and "resolved" not in self._done:
            rem = reminders[-1]
            self._reminders_seen = len(reminders)
            due = fay.call("GET", f"/v1/incidents/{inc_id}/comms")
            for item in due.get("items") or []:
                if item.get("state") not in ("due", "overdue"):
                    continue
                why = f"answering the reminder “{rem.subject[:70]}”"
                if item["audience"] == "internal":
                    self._publish(cam, "internal", {
                        "summary": f"Update on {inc.get('title')}: status {inc.get('status')}.",
                        "impact": self._harm_text(inc), "status": str(inc.get("status")),
                        "next_update": "in 10 minutes"}, why=why)
                elif item["audience"] == "status_page":
                    self._publish(cam, "status_page", self._status_facts("monitoring"), why=why)

    def _status_facts(self, status: str) -> dict[str, Any]:
        actions = {
            "identified": "We have switched off the affected part and are restoring the previous version.",
            "monitoring": "The previous version is back; we are re-opening carefully and watching the answers.",
        }[status]
        return {"title": f"Issue affecting {self.sc.feature.split(' (')[0]}", "status": status,
                "feature": self.sc.feature, "alternatives": self.sc.alternatives, "actions": actions,
                "status_url": f"{self.server.url if self.server else ''}/status", "next_update": "within 30 minutes"}

    def _harm_text(self, inc: dict[str, Any]) -> str:
        h = inc.get("harm") or {}
        return f"{h.get('requests', '?')} harmful requests, {h.get('subjects', '?')} customers"

    def _publish(self, who: Person, audience: str, facts: dict[str, Any], why: str = "") -> None:
        assert self.incident_id is not None
        who.call("POST", f"/v1/incidents/{self.incident_id}/updates", json={"audience": audience, "facts": facts})
        self.say(f"{who.handle} publishes the {audience.replace('_', ' ')} update"
                 + (f" ({why})" if why else ""), "comms")

    def _acknowledge(self, pages: list[Delivery]) -> None:
        """The paged incident lead follows the acknowledgement link in the e-mail."""
        assert self.incident_id is not None
        mine = [p for p in pages if any(t.startswith("fay@") for t in p.to)] or pages
        m = re.search(r"https?://\S+/v1/oncall/ack/\S+", mine[0].body)
        if m:
            with httpx.Client(timeout=10.0) as c:
                r = c.post(m.group(0).rstrip(".,)>"))
            how = "the link in the page e-mail"
            if r.status_code >= 400:
                self.people["fay"].call("POST", f"/v1/incidents/{self.incident_id}/ack")
                how = f"the API (the link answered {r.status_code})"
        else:
            self.people["fay"].call("POST", f"/v1/incidents/{self.incident_id}/ack")
            how = "the API"
        self.say(f"fay acknowledges the page via {how}", "people")

    def _follow_timeline(self) -> None:
        assert self.incident_id is not None
        lead = self.people["fay"]
        while True:
            page = lead.call("GET", f"/v1/incidents/{self.incident_id}/timeline", params={"after_seq": self._seen_seq})
            for e in page["entries"]:
                self._seen_seq = max(self._seen_seq, int(e["seq"]))
                self._show_entry(e)
            if not page.get("next_after_seq"):
                break
        self.fig.incident = lead.call("GET", f"/v1/incidents/{self.incident_id}")

    def _show_entry(self, e: dict[str, Any]) -> None:
        kind = str(e["kind"])
        if kind == "runbook.step.done" and ": verified" in str(e.get("text")):
            self._done.add("verified")
        if kind.startswith("audit"):
            return  # one line per reviewed answer is too much; the audit check sums them up
        text = " ".join(str(e.get("text") or "").split())
        if len(text) > 150:
            text = text[:147] + "…"
        style = "system"
        if kind in ("opened", "triage", "harm") or kind.startswith("alert"):
            style = "harm"
        elif kind in ("role_assigned", "page", "escalation", "milestone") or e.get("actor", "").isalpha():
            style = "people"
        elif kind.startswith(("comms", "update", "reminder")):
            style = "comms"
        elif kind in ("control.set", "change.rollback") or kind.startswith("recovery") or kind == "status":
            style = "ok"
        self.view_line(e["time"], f"[{kind}] {e.get('actor')}: {text}", style)

    def view_line(self, t: float, text: str, style: str) -> None:
        assert self.view is not None
        self.view.line(t, text, style)

    # ----- the story ----------------------------------------------------------------------------------------

    def play(self) -> None:
        assert self.app is not None and self.server is not None and self.view is not None
        sc, app, lead = self.sc, self.app, self.people["fay"]
        view = self.view
        view.t0 = self.now
        app.start()
        if not app.guard.wait_ready(timeout=15):
            raise StoryError("the assistant's Guard got no snapshot from the server")

        view.step(1, "Normal traffic across a few workflows; baselines settle")
        self.say(f"the support assistant serves {', '.join(w.name for w in app.workflows)} through the SDK "
                 f"(a Guard: decide before every request and refund, trace every answer)", "ok")
        self.wait_until("warm-up", lambda: self.now - view.t0 >= WARMUP_S, within_s=WARMUP_S + 60, phase="normal")
        base, n = app.ledger.bad_rate(sc.workflow, view.t0, self.now)
        self.say(f"{sc.workflow}: {100 * (base or 0):.1f}% of answers wrong over {n} answers — healthy", "ok")

        view.step(2, f"{sc.kind.replace('_', ' ')} {sc.config} {sc.bad} is rolled out through the config API")
        ch = self.people["dan"].call("POST", f"/v1/configs/{sc.kind}/{sc.config}/activate",
                                     json={"version": sc.bad, "note": "rewritten for tone and brevity"})
        self.fig.rollout_t = float(ch.get("time") or self.now)
        app.armed = True
        self.say(f"dan activates {sc.config_key} {sc.stable} → {sc.bad} (change {ch.get('id')})", "people",
                 t=self.fig.rollout_t)

        view.step(3, "Harm: the vitals monitor, the triage desk, the on-call map and the runbook take over")

        def opened() -> bool:
            found = lead.call("GET", "/v1/incidents", params={"workflow": sc.workflow})
            items = found["incidents"] if isinstance(found, dict) else found
            if items:
                self.incident_id = int(items[-1]["id"])
                return True
            return False

        if not self.wait_until("detection", opened, within_s=DETECT_WITHIN_S, phase="harm", poll=0.3):
            self.check("incident opened by the vitals monitor", False, "no incident")
            return
        self._follow_timeline()
        inc = self.fig.incident
        self.fig.opened_t = float(inc["opened_at"])
        self.say(f"watch it live: {self.server.url}/console/incidents/{inc['id']}", "check")
        top = (inc.get("suspects") or [{}])[0]
        self.check("incident opened with triage", bool(inc.get("failure_type")) and bool(inc.get("harm"))
                   and inc.get("source") == "detector",
                   f"#{inc['id']} {inc['severity']} {inc['failure_type']}, harm {self._harm_text(inc)}, "
                   f"{(self.fig.opened_t - self.fig.rollout_t) / 60:.1f} min after the rollout")
        self.check("the rollout is the top suspect",
                   (top.get("kind"), top.get("name"), top.get("version")) == (sc.kind, sc.config, sc.bad),
                   f"{top.get('kind')}/{top.get('name')} {top.get('version')} score {top.get('score', 0):.2f}")

        self.wait_until("pages", lambda: bool(self.inbox.select(kind="page", incident_id=self.incident_id)),
                        within_s=5 * 60, phase="paging")
        self.wait_until("acknowledgement", lambda: bool(self.fig.incident.get("milestones", {}).get("acknowledged")),
                        within_s=5 * 60, phase="paging")

        self.wait_until("containment", self._contained, within_s=CONTAIN_WITHIN_S, phase="containing", poll=0.05)

        self.wait_until("status page", lambda: "status1" in self._done and "internal1" in self._done,
                        within_s=10 * 60, phase="communicating")
        if sc.action:
            self.wait_until("support brief", lambda: "support" in self._done, within_s=10 * 60, phase="communicating")

        view.step(4, "The bad rate falls; served answers audited; verified recovery")
        self.wait_until("answers after the fix", lambda: self._after_fix_n() >= 150, within_s=20 * 60,
                        phase="recovering")
        self._audit()
        self._recover()

        view.step(5, "Resolution and the post-mortem draft")
        self._resolve()

    def _after_fix_n(self) -> int:
        assert self.app is not None and self.fig.contained_t is not None
        _, n = self.app.ledger.bad_rate(self.sc.workflow, self.fig.contained_t, self.now, model_only=False)
        return n

    def _contained(self) -> bool:
        """Containment as the application sees it (recorded by its Guard's listener when it happened)."""
        assert self.app is not None
        if self.app.contained_at is None:
            return False
        if self.fig.contained_t is None:
            self.fig.contained_wall, self.fig.contained_t = self.app.contained_at
            self._follow_timeline()
            sc = self.sc
            prop = self._propagation_ms()
            self.check("the assistant's Guard follows the containment",
                       True, (f"its own decide sends {sc.action} to the human queue; " if sc.action else "")
                       + f"it is served {sc.config_key} {sc.stable} again"
                       + (f" — {prop:.0f} ms after the server's change" if prop is not None else ""))
        return True

    def _audit(self) -> None:
        """The feature owner reviews the riskiest served answers of the incident window."""
        assert self.incident_id is not None
        fay = self.people["fay"]
        try:
            page = fay.call("GET", f"/v1/incidents/{self.incident_id}/audit", params={"limit": 20})
        except StoryError as exc:
            self.check("served answers queued for audit", False, str(exc))
            return
        items = page.get("items") or []
        q = page.get("queue") or {}
        reviewed = harmful = 0
        for it in items[:12]:
            bad = self._judge_item(it)
            state = "harmful" if bad else "ok"
            fay.call("POST", f"/v1/incidents/{self.incident_id}/audit/items/{it['id']}",
                     json={"state": state, "note": "contradicts our published terms" if bad else "correct"})
            reviewed += 1
            harmful += int(bad)
        self.check("served answers queued for audit", bool(items),
                   f"{q.get('items', len(items))} answers queued; fay reviewed {reviewed} ({harmful} harmful)")

    def _judge_item(self, it: dict[str, Any]) -> bool:
        """What a reviewer does: read the answer of the item's conversation (its trace) and judge it."""
        if it.get("kind") == "response" or it.get("grounded") is not None:
            return it.get("grounded") is False
        if it.get("kind") == "complaint":
            return True
        t = float(it.get("time") or 0)
        page = self.people["fay"].call("GET", "/v1/events", params={
            "workflow": it.get("workflow"), "subject": it.get("subject"), "kind": "response",
            "since": f"{t - 5:.3f}", "until": f"{t + 5:.3f}", "limit": 50})
        answers = [e for e in page.get("events") or [] if e.get("trace_id") == it.get("trace_id")]
        return any(e.get("grounded") is False for e in answers)

    def _recover(self) -> None:
        assert self.incident_id is not None and self.app is not None
        inc_id = self.incident_id
        ian, ria, fay = self.people["ian"], self.people["ria"], self.people["fay"]
        plan: dict[str, Any] | None = None
        try:
            plan = ian.call("POST", f"/v1/incidents/{inc_id}/recover",
                            json={"ramp": [1, 10, 50, 100], "hold_s": 120, "min_events": 20,
                                  "conditions": [{"indicator": self._indicator(), "below": RECOVERY_BELOW}]})
        except StoryError as exc:
            if "no containment" not in str(exc):
                raise
            self.say("nothing to ramp: the rollback alone contained it (no action path was switched off)", "dim")
        self.fig.recovery_started_t = self.now
        if plan is not None:
            self.say(f"ian asks for a verified recovery: 1 % → 10 % → 50 % → 100 %, each stage held 2 min over "
                     f"≥ 20 answers with {self._indicator()} below {RECOVERY_BELOW:.0%}", "people")
            if plan.get("state") == "awaiting_approval":
                ria.call("POST", f"/v1/incidents/{inc_id}/recover/approve")
                self.say("ria (risk owner) approves re-enabling the refund action path", "people")
            ok = self.wait_until("recovery", lambda: self.fig.incident.get("status") == "monitoring",
                                 within_s=RECOVER_WITHIN_S, phase="recovering")
            stages = [e for e in self._entries() if e["kind"] == "recovery.stage"]
            pct = [s["data"]["ramp"][s["data"]["stage"]] for s in stages]
            self.check("recovery ramped with verification", ok and pct[:4] == [1, 10, 50, 100],
                       f"stages {', '.join(f'{p:g}%' for p in pct)}; incident {self.fig.incident.get('status')}")
        else:
            # reopen only after verification: the runbook's own verify step must have held
            ok = self.wait_until("the runbook's verification", self._verified, within_s=20 * 60, phase="verifying")
            self.check("the rollback verified by the runbook", ok,
                       "verify step held over enough answers" if ok else "the verify step did not pass")
            fay.call("POST", f"/v1/incidents/{inc_id}/status",
                     json={"to": "monitoring", "note": "the rollback holds: answers verified healthy"})
            self.say("fay moves the incident to monitoring: the rollback holds", "people")
        self.fig.monitoring_t = self.now

    def _indicator(self) -> str:
        ind = (self.fig.incident.get("data") or {}).get("indicator") if self.fig.incident else None
        return str(ind or "grounding_failure_rate")

    def _verified(self) -> bool:
        return "verified" in self._done

    def _entries(self) -> list[dict[str, Any]]:
        assert self.incident_id is not None
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.people["fay"].call("GET", f"/v1/incidents/{self.incident_id}/timeline",
                                           params={"after_seq": after})
            out.extend(page["entries"])
            if not page.get("next_after_seq"):
                return out
            after = page["next_after_seq"]

    def _resolve(self) -> None:
        assert self.incident_id is not None and self.server is not None
        inc_id = self.incident_id
        fay, cam = self.people["fay"], self.people["cam"]
        start = self.now
        self.wait_until("monitoring", lambda: self.now - start >= 3 * 60, within_s=5 * 60, phase="monitoring")
        fay.call("POST", f"/v1/incidents/{inc_id}/status", json={"to": "resolved", "note": "verified healthy"})
        self._done.add("resolved")
        self.fig.resolved_t = self.now
        self.say("fay resolves the incident", "people")
        self._publish(cam, "status_page", {
            "title": f"Issue affecting {self.sc.feature.split(' (')[0]}", "status": "resolved",
            "feature": self.sc.feature, "alternatives": "All features work normally again.",
            "actions": "The previous version is back and answers were verified; affected customers are being "
                       "contacted.", "status_url": f"{self.server.url}/status"})
        self._follow_timeline()
        pm = fay.call("GET", f"/v1/incidents/{inc_id}/postmortem", params={"generate": "true"})
        md = pm.get("markdown") if isinstance(pm, dict) else None
        if not md:
            md = fay.call("GET", f"/v1/incidents/{inc_id}/postmortem", params={"generate": "true", "format": "md"})
        path = self.dir / f"postmortem-incident-{inc_id}.md"
        path.write_text(str(md))
        self.fig.postmortem = (pm.get("facts") or {}) if isinstance(pm, dict) else {}
        self.fig.postmortem_path = path
        self.say(f"post-mortem draft written to {path}", "ok")

    # ----- judging ------------------------------------------------------------------------------------------

    def judge(self) -> list[tuple[str, str, str, bool]]:
        """Judge the run by its effects; returns the summary rows (figure, app, server, agrees)."""
        assert self.app is not None
        sc, led, fig = self.sc, self.app.ledger, self.fig
        rows: list[tuple[str, str, str, bool]] = []
        inc_id = self.incident_id
        # pages arrived at the receiver
        pages = self.inbox.select(kind="page", incident_id=inc_id) if inc_id else []
        self.check("pages delivered to the mail sink", bool(pages),
                   f"{len(pages)} page e-mails to {', '.join(sorted({t for p in pages for t in p.to}))}")
        # communication: each audience's update reached its receiver; the public page shows the incident
        upd = [d for d in self.inbox.select(kind="update") if d.incident_id in (inc_id, None)]
        got = {
            "internal": any(d.via == "slack" and "internal update" in d.subject for d in upd),
            "status page": any(d.via == "statuspage" for d in upd),
            "support brief": any(any(t.startswith("support-leads@") for t in d.to) for d in upd),
            "executive brief": any(any(t.startswith("exec-brief@") for t in d.to) for d in upd),
        }
        page = ""
        if self.server is not None:
            with httpx.Client(timeout=10.0) as c:
                page = c.get(f"{self.server.url}/status").text
        public = f"Issue affecting {self.sc.feature.split(' (')[0]}" in page
        reminders = self.inbox.select(kind="reminder", incident_id=inc_id) if inc_id else []
        self.check("communication delivered on cadence", all(got.values()) and public,
                   ", ".join(f"{k} {'✔' if v else '✘'}" for k, v in got.items())
                   + f"; /status shows it: {'yes' if public else 'no'}; {len(reminders)} reminders sent")
        # the assistant's own decide after containment
        if sc.action and fig.contained_wall is not None:
            until = self._recovery_wall()
            rev = self.app.contained_revision
            after = [r for r in led.refunds if r.revision >= rev and r.wall < until]
            blocked = [r for r in after if not r.allowed and r.fallback == "human_queue"]
            self.check("the assistant's own decide blocked refunds after containment",
                       bool(after) and len(blocked) == len(after),
                       f"{len(blocked)}/{len(after)} refund decisions → {after[0].fallback if after else '—'} "
                       f"(incident {after[0].incident_id if after else '—'})")
        # propagation: server wrote the control → the app's Guard changed
        prop = self._propagation_ms()
        if prop is not None:
            rows.append(("server change → the assistant's Guard", f"{prop:.0f} ms", "SSE push", True))
            self.figures["propagation_ms"] = prop
        # the bad rate fell
        if fig.rollout_t and fig.contained_t:
            during, n1 = led.bad_rate(sc.workflow, fig.rollout_t, fig.contained_t)
            end = fig.resolved_t or self.now
            after_rate, n2 = led.bad_rate(sc.workflow, fig.contained_t + 60, end)
            before, n0 = led.bad_rate(sc.workflow, self.view.t0 if self.view else 0, fig.rollout_t)
            ok = during is not None and after_rate is not None and n2 >= 50 and after_rate < during / 2
            self.check("the bad rate on the assistant's traffic fell after the rollback", ok,
                       f"before {self._pct(before)} (n={n0}) → during {self._pct(during)} (n={n1}) → after "
                       f"{self._pct(after_rate)} (n={n2}, model answers)")
            self.figures.update(bad_rate_before=before, bad_rate_during=during, bad_rate_after=after_rate)
            rows.append((f"wrong answers, {sc.workflow}: before / during / after",
                         f"{self._pct(before)} / {self._pct(during)} / {self._pct(after_rate)}", "", ok))
        self._judge_postmortem(rows)
        self.figures.update(requests=self.app.requests, skipped=self.app.skipped,
                            refunds_issued_on_wrong_guidance=led.wrong_refunds_issued)
        rows.append(("simulated requests", f"{self.app.requests} served"
                     + (f", {self.app.skipped} skipped to keep up with the clock" if self.app.skipped else ""),
                     "", True))
        st = self.app.guard.stats
        dropped = int(st.get("events_dropped", 0)) + int(st.get("events_rejected", 0))
        self.check("every event the assistant traced reached codeblue", dropped == 0,
                   f"{st.get('events_sent')} sent, {dropped} dropped or rejected")
        return rows

    def _recovery_wall(self) -> float:
        if self.fig.recovery_started_t is None or self.clock is None:
            return float("inf")
        return self.clock.wall_at(self.fig.recovery_started_t)

    def _propagation_ms(self) -> float | None:
        """From the containment control's creation (server clock → wall) to the Guard's `changed` for it."""
        if self.incident_id is None or self.clock is None or self.app is None:
            return None
        entries = [e for e in self._entries() if e["kind"] in ("control.set", "change.rollback")]
        if not entries:
            return None
        first = min(float(e["time"]) for e in entries)
        wall = self.clock.wall_at(first)
        # the Guard can only see the change after it was written; allow the clock mapping's few ms of error
        seen = [w for w, _t, _rev in self.app.ledger.changes if w >= wall - 0.02]
        if not seen:
            return None
        return max(0.0, (min(seen) - wall) * 1000.0)

    @staticmethod
    def _pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    def _judge_postmortem(self, rows: list[tuple[str, str, str, bool]]) -> None:
        assert self.app is not None
        fig, led, sc = self.fig, self.app.ledger, self.sc
        pm = fig.postmortem
        c = pm.get("containment") or {}
        if not c or fig.rollout_t is None or fig.opened_t is None:
            self.check("post-mortem draft written with the run's figures", False, "no post-mortem facts")
            return
        # detection delay: from the onset (the rollout, which is when harm began) to the incident
        app_detect = fig.opened_t - fig.rollout_t
        pm_detect = float(c.get("time_to_detect_s") or 0.0)
        ok_detect = abs(app_detect - pm_detect) <= 90
        rows.append(("detection delay (onset → incident)", _dur(app_detect), _dur(pm_detect), ok_detect))
        self.figures.update(detection_delay_s=app_detect, postmortem_detection_delay_s=pm_detect)
        # time to contain: incident → the application actually obeying
        ok_contain = True
        if fig.contained_t is not None and c.get("time_to_contain_s") is not None:
            app_contain = fig.contained_t - fig.opened_t
            pm_contain = float(c["time_to_contain_s"])
            ok_contain = abs(app_contain - pm_contain) <= max(30.0, 0.25 * pm_contain)
            rows.append(("time to contain (incident → contained)", _dur(app_contain), _dur(pm_contain), ok_contain))
            self.figures.update(time_to_contain_s=app_contain, postmortem_time_to_contain_s=pm_contain)
        # harm before containment, counted over the post-mortem's own window from the app's books
        onset = float(c.get("onset") or fig.rollout_t)
        contained_at = (self.fig.incident.get("milestones") or {}).get("contained")
        pm_harm = int(c.get("harm_before_containment") or 0)
        ok_harm = True
        if contained_at:
            app_harm, subjects = led.harm(sc.workflow, onset, float(contained_at))
            ok_harm = abs(app_harm - pm_harm) <= max(3, 0.05 * app_harm)
            self.figures.update(harm_before_containment=app_harm, postmortem_harm_before_containment=pm_harm)
            rows.append(("harm before containment (wrong answers + complaints)", f"{app_harm} ({subjects} customers)",
                         f"{pm_harm} ({c.get('subjects_before_containment')} customers)", ok_harm))
        if sc.action:
            rows.append(("refunds issued on wrong guidance", str(led.wrong_refunds_issued), "", True))
            rows.append(("refund cases sent to the human queue", str(led.refunds_to_humans), "", True))
        md = fig.postmortem_path.read_text() if fig.postmortem_path else ""
        missed = "missed" in md.lower()
        self.check("post-mortem draft written with the run's figures",
                   bool(md) and ok_detect and ok_contain and ok_harm and missed,
                   f"{fig.postmortem_path} (detection {_dur(pm_detect)}, harm {pm_harm}, missed signals "
                   f"{'section present' if missed else 'missing'})")


def _dur(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m}m {sec:02d}s"

