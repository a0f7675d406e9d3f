"""Peer side of bench/sdk_decide.py: run with the peers' own interpreter (bench/out/venv-peers), never
imported by codeblue. Prints one JSON object: {"peer name": median ns per evaluation}.

Each peer gets the same shape of work as the Guard: N_FLAGS flags (one per guarded action path), evaluated
for a mixed list of requests with per-user contexts built ahead of time (so only evaluation is timed).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

logging.disable(logging.CRITICAL)

N_FLAGS = int(sys.argv[1]) if len(sys.argv) > 1 else 120
BATCHES = int(sys.argv[2]) if len(sys.argv) > 2 else 100
PER_BATCH = 1000
flags = [f"wf{i % 24}.action{i // 24}" for i in range(N_FLAGS)]
users = [f"user-{i}" for i in range(500)]
requests = [(flags[(i * 7919) % N_FLAGS], users[(i * 104729) % len(users)]) for i in range(PER_BATCH)]


def measure(fn: Callable[[str, Any], Any], ctx_of: Callable[[str], Any]) -> float:
    work = [(f, ctx_of(u)) for f, u in requests]
    for f, c in work[:200]:
        fn(f, c)
    samples = []
    for _ in range(BATCHES):
        t0 = time.perf_counter_ns()
        for f, c in work:
            fn(f, c)
        samples.append((time.perf_counter_ns() - t0) / len(work))
    return statistics.median(samples)


def openfeature() -> float:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    api.set_provider(InMemoryProvider({f: InMemoryFlag("on", {"on": True, "off": False}) for f in flags}))
    client = api.get_client()
    return measure(lambda f, c: client.get_boolean_value(f, False, c), lambda u: EvaluationContext(targeting_key=u))


def launchdarkly() -> float:
    import ldclient
    from ldclient import Context
    from ldclient.config import Config
    from ldclient.integrations.test_data import TestData

    td = TestData.data_source()
    for f in flags:
        td.update(td.flag(f).boolean_flag().variation_for_all(True))
    client = ldclient.LDClient(Config("bench-sdk-key", update_processor_class=td, send_events=False))
    try:
        return measure(lambda f, c: client.variation(f, c, False), lambda u: Context.builder(u).build())
    finally:
        client.close()


def unleash() -> float:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    features = {
        "version": 1,
        "features": [
            {"name": f, "enabled": True, "strategies": [{"name": "default", "parameters": {}}]} for f in flags
        ],
    }
    cache = FileCache("codeblue-bench", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict(features)
    client = UnleashClient(url="http://127.0.0.1:9", app_name="codeblue-bench", cache=cache,
                           disable_metrics=True, disable_registration=True, refresh_interval=3600)
    client.initialize_client(fetch_toggles=False)
    try:
        assert client.is_enabled(flags[0], {"userId": users[0]})
        return measure(lambda f, c: client.is_enabled(f, c), lambda u: {"userId": u})
    finally:
        client.destroy()


def pybreaker_call() -> float:
    import pybreaker

    breakers = {f: pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30) for f in flags}

    def noop() -> bool:
        return True

    return measure(lambda f, c: breakers[f].call(noop), lambda u: u)


if __name__ == "__main__":
    out: dict[str, Any] = {}
    for name, fn in (("openfeature_inmemory", openfeature), ("launchdarkly_testdata", launchdarkly),
                     ("unleash_bootstrapped", unleash), ("pybreaker_call", pybreaker_call)):
        try:
            out[name] = fn()
        except Exception as e:  # report, don't hide: the table says which peer could not run
            out[name] = f"error: {type(e).__name__}: {e}"
    print(json.dumps(out))
