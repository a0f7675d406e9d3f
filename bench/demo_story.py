"""Figures of the end-to-end story: `codeblue demo --fast --exit` per scenario, as a user runs it.

    .venv/bin/python bench/demo_story.py [--scenario refund-prompt --scenario finance-router] [--speed 60]

Prints, per scenario: wall time of the whole run (server start to post-mortem), stream time covered, the
propagation from the server's containment to the assistant's own Guard, detection delay and time to contain
(the assistant's measurement and the post-mortem's), harm before containment (both), the wrong-answer rate
before / during / after, and simulated requests skipped because the machine could not keep up.
Goals (issue 9): the story in seconds to a minute; the assistant's decide switches within milliseconds.
No peer: no other tool plays this story end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(scenario: str, speed: float | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="codeblue-bench-demo-") as d:
        report = Path(d) / "report.json"
        cmd = [sys.executable, "-m", "codeblue.cli.main", "demo", "--fast", "--exit", "--scenario", scenario,
               "--data-dir", str(Path(d) / "run"), "--report", str(report)]
        if speed:
            cmd += ["--speed", str(speed)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEBLUE_")}
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        wall = time.time() - t0
        if not report.exists():
            sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
            raise SystemExit(f"{scenario}: no report (exit {p.returncode})")
        out: dict[str, object] = json.loads(report.read_text())
        out["process_wall_s"] = wall
        out["exit"] = p.returncode
        return out


def fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 1 else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", choices=["refund-prompt", "finance-router"])
    ap.add_argument("--speed", type=float, default=None)
    args = ap.parse_args()
    for sc in args.scenario or ["refund-prompt", "finance-router"]:
        r = run(sc, args.speed)
        f = r["figures"]
        assert isinstance(f, dict)
        failed = [c["name"] for c in r["checks"] if not c["ok"]]  # type: ignore[union-attr,index]
        print(f"\n{sc} (clock ×{r['speed']}): exit {r['exit']}, "
              + ("every step happened" if not failed else f"FAILED: {', '.join(failed)}"))
        rows = [
            ("wall time, server start → post-mortem", fmt(r["process_wall_s"], " s")),
            ("stream time covered", fmt(float(r["stream_s"]) / 60, " min")),  # type: ignore[arg-type]
            ("server change → the assistant's Guard", fmt(f.get("propagation_ms"), " ms")),
            ("detection delay: app / post-mortem", f"{fmt(f.get('detection_delay_s'), ' s')} / "
                                                   f"{fmt(f.get('postmortem_detection_delay_s'), ' s')}"),
            ("time to contain: app / post-mortem", f"{fmt(f.get('time_to_contain_s'), ' s')} / "
                                                   f"{fmt(f.get('postmortem_time_to_contain_s'), ' s')}"),
            ("harm before containment: app / post-mortem", f"{f.get('harm_before_containment')} / "
                                                           f"{f.get('postmortem_harm_before_containment')}"),
            ("wrong answers before / during / after", " / ".join(
                "—" if f.get(k) is None else f"{100 * float(f[k]):.1f}%"
                for k in ("bad_rate_before", "bad_rate_during", "bad_rate_after"))),
            ("simulated requests (skipped to keep up)", f"{f.get('requests')} ({f.get('skipped')})"),
        ]
        for name, val in rows:
            print(f"  {name:<45} {val}")


if __name__ == "__main__":
    main()
