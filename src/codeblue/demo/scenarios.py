"""The demo's two stories: what the simulated assistant serves, what gets rolled out, and what goes wrong.

The workflows and their baseline rates come from the simulator (`codeblue.sim`); the demo adds only what a
story needs: which config is rolled out, which of its versions the (simulated) model handles badly, and the
facts the people publish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from codeblue.sim.scenarios import base_workflows
from codeblue.sim.traffic import WorkflowSpec

#: Requests per second of stream time at the daily peak, per workflow the assistant serves. The refund desk is
#: the busiest, so a 1 % recovery stage still sees enough of its answers to verify.
LOAD = {"refund-desk": 5.0, "finance-qa": 2.0, "support-desk": 1.5}


@dataclass(frozen=True)
class DemoScenario:
    name: str
    title: str
    workflow: str  # where harm happens
    kind: str  # the config rolled out
    config: str
    stable: str
    bad: str
    bad_rates: dict[str, float]
    #: Which served requests the bad version hurts (segment-aware: the router sends only finance questions away).
    hurts: Callable[[dict[str, str], str | None], bool]
    bad_model: str | None
    action: str | None  # the action path with side effects, if the workflow has one
    feature: str  # for the status page and the support brief
    alternatives: str
    customer_message: str
    theme: str  # complaint theme (sim.texts.THEMES)

    def workflows(self) -> list[WorkflowSpec]:
        wfs = [w for w in base_workflows() if w.name in LOAD]
        for w in wfs:
            w.peak_rps = LOAD[w.name]
        return wfs

    @property
    def config_key(self) -> str:
        return f"{self.kind}/{self.config}"


SCENARIOS: dict[str, DemoScenario] = {
    "refund-prompt": DemoScenario(
        name="refund-prompt",
        title="Wrong refund guidance after a prompt rollout",
        workflow="refund-desk", kind="prompt", config="refund-assistant", stable="v41", bad="v42",
        bad_rates={"ungrounded": 0.30},
        hurts=lambda versions, _segment: versions.get("prompt/refund-assistant") == "v42",
        bad_model=None, action="issue_refund",
        feature="Refund assistant (refund questions and refund requests)",
        alternatives="Refund requests are handled by our support team; order status and all other help "
                     "in the assistant work normally.",
        customer_message="Refund answers from the assistant between the rollout and the fix may have been "
                         "wrong; a specialist will review refund cases and contact affected customers.",
        theme="refund_wrong",
    ),
    "finance-router": DemoScenario(
        name="finance-router",
        title="Finance questions routed to a weaker model",
        workflow="finance-qa", kind="routing_policy", config="finance-router", stable="r7", bad="r8",
        bad_rates={"ungrounded": 0.35},
        hurts=lambda versions, segment: versions.get("routing_policy/finance-router") == "r8"
        and segment == "finance",
        bad_model="gpt-mini", action=None,
        feature="Finance answers (interest rates, fees, APR)",
        alternatives="Account pages show rates and fees; our support team answers finance questions by chat "
                     "and phone.",
        customer_message="Some answers about rates and fees may have been inaccurate for a short time; the "
                         "previous setup is restored.",
        theme="finance_wrong",
    ),
}
