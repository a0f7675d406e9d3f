"""The Guard: what an AI application embeds to obey containment and report what its AI did.

`decide` answers from an immutable compiled snapshot held in one attribute and swapped whole on every
revision; a decision for the same arguments on the same revision is memoised, so the common call is one
tuple and one dictionary lookup. Two background threads keep the snapshot fresh and the reports flowing:

* the stream thread subscribes to ``/v1/controls/stream`` (SSE), applies patches in revision order,
  resyncs from the snapshot on a gap, and reconnects with exponential backoff and jitter;
* the worker thread sends queued events in batches, heartbeats the Guard's state to the server, polls the
  snapshot as a safety net, persists the last-known-good file, drops expired controls and warns when the
  snapshot goes stale.

Nothing here imports the server side of codeblue: only the standard library, httpx and fastjsonschema.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import itertools
import logging
import math
import os
import random
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, cast

import httpx

from codeblue.sdk import breaker as _breaker
from codeblue.sdk import lkg, sse
from codeblue.sdk.decision import Blocked, ConfigValue, Decision
from codeblue.sdk.evaluator import (
    Index,
    Keyed,
    Request,
    SnapshotError,
    apply_patch,
    compile_snapshot,
    config_for,
    dumps,
    evaluate,
    versions_for,
)
from codeblue.sdk.reporting import EventQueue, ToolContracts, Trace

log = logging.getLogger("codeblue.sdk")

SDK_VERSION = "0.1.0"
FAIL_OPEN: Final = "fail_open"
FAIL_CLOSED: Final = "fail_closed"
_MODES = (FAIL_OPEN, FAIL_CLOSED)
_MEMO_MAX = 65_536
_SMALL_MEMO_MAX = 8_192

P = ParamSpec("P")
R = TypeVar("R")


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


#: `lkg_path=AUTO` (the default) keeps the last-known-good file in the user's cache directory.
AUTO: Final = _Auto()

Listener = Callable[[str, int], None]


class _State:
    """What `decide` reads: one compiled snapshot (or none) plus memo tables for it. Replaced, never edited
    (the memo tables only ever gain entries for this exact snapshot)."""

    __slots__ = ("cmemo", "index", "memo", "revision", "source", "tripped", "vmemo")

    def __init__(self, index: Index | None, tripped: frozenset[str]) -> None:
        self.index = index
        self.tripped = tripped
        self.revision = index.revision if index is not None else 0
        self.source = "default" if index is None else ("lkg" if index.source == "lkg" else "snapshot")
        self.memo: dict[Request, Decision | Keyed] = {}
        self.vmemo: dict[tuple[str, str | None], dict[str, str]] = {}
        self.cmemo: dict[tuple[str, str, str | None], ConfigValue | None] = {}


def default_lkg_path(url: str | None, service: str, environment: str) -> Path:
    """Where the last-known-good file lives when the application does not say."""
    base = os.environ.get("CODEBLUE_SDK_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    if not os.environ.get("CODEBLUE_SDK_CACHE_DIR"):
        root = root / "codeblue"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{service or 'app'}-{environment}")
    digest = hashlib.sha256((url or "offline").encode()).hexdigest()[:12]
    return root / f"lkg-{safe}-{digest}.json"


class _Action:
    """`guard.action(...)`: a decorator for a function, or a context manager yielding the Decision."""

    def __init__(
        self,
        guard: Guard,
        workflow: str,
        action: str,
        *,
        fallback: Callable[..., Any] | None,
        default: str | None,
        tool: str | None,
        dependency: str | None,
        segment: str | Callable[..., str | None] | None,
        tenant: str | Callable[..., str | None] | None,
        key: str | Callable[..., str | None] | None,
    ) -> None:
        self.guard = guard
        self.workflow = workflow
        self.action = action
        self.fallback = fallback
        self.tool = tool
        self.dependency = dependency
        self.segment = segment
        self.tenant = tenant
        self.key = key
        if default is not None:
            guard.set_default(workflow, action, default)

    def _pick(self, v: str | Callable[..., str | None] | None, args: Any, kwargs: Any) -> str | None:
        return v(*args, **kwargs) if callable(v) else v

    def _decide(self, args: Any, kwargs: Any) -> Decision:
        try:
            seg = self._pick(self.segment, args, kwargs)
            ten = self._pick(self.tenant, args, kwargs)
            key = self._pick(self.key, args, kwargs)
        except Exception as e:  # a broken extractor must not take the action down with it
            log.warning("codeblue guard: extracting segment/tenant/key for %s.%s failed: %s",
                        self.workflow, self.action, e)
            seg = ten = key = None
        return self.guard.decide(self.workflow, action=self.action, tool=self.tool, dependency=self.dependency,
                                 segment=seg, tenant=ten, key=key)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        fallback = self.fallback
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                d = self._decide(args, kwargs)
                if d.allowed:
                    return await afn(*args, **kwargs)
                if fallback is None:
                    raise Blocked(d)
                out = fallback(*args, **kwargs)
                return await out if inspect.isawaitable(out) else out

            return cast(Callable[P, R], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            d = self._decide(args, kwargs)
            if d.allowed:
                return fn(*args, **kwargs)
            if fallback is None:
                raise Blocked(d)
            return cast(R, fallback(*args, **kwargs))

        return wrapper

    def __enter__(self) -> Decision:
        return self._decide((), {})

    def __exit__(self, *_exc: object) -> None:
        return None


class Guard:
    """An in-process guard for one service in one environment. Create one per process, share it freely.

    `url`/`token`: the codeblue server and an API token with the ``ingest`` role (``None`` url: offline,
    last-known-good file and defaults only). `default`: what an action does when no snapshot has ever been
    loaded (``fail_open`` or ``fail_closed``); `defaults` overrides it per ``"workflow"`` or
    ``"workflow.action"``. Every other argument has a production default; tests shorten the intervals.
    """

    def __init__(
        self,
        url: str | None,
        token: str | None = None,
        service: str = "",
        environment: str = "production",
        *,
        default: str = FAIL_OPEN,
        defaults: Mapping[str, str] | None = None,
        lkg_path: str | os.PathLike[str] | _Auto | None = AUTO,
        stream: bool = True,
        poll_interval: float = 60.0,
        heartbeat_interval: float = 30.0,
        stale_after: float = 60.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        stream_read_timeout: float = 35.0,
        timeout: float = 10.0,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        text_sample_rate: float = 1.0,
        breaker_failures: int = 5,
        breaker_window: float = 30.0,
        breaker_cooldown: float = 15.0,
        breaker_trial_calls: int = 1,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        start: bool = True,
    ) -> None:
        if default not in _MODES:
            raise ValueError(f"default must be one of {', '.join(_MODES)}, got {default!r}")
        if not 0.0 <= text_sample_rate <= 1.0:
            raise ValueError("text_sample_rate must be between 0 and 1")
        for name, val in (("poll_interval", poll_interval), ("heartbeat_interval", heartbeat_interval),
                          ("stale_after", stale_after), ("reconnect_min", reconnect_min),
                          ("reconnect_max", reconnect_max), ("flush_interval", flush_interval),
                          ("timeout", timeout), ("stream_read_timeout", stream_read_timeout)):
            if not val > 0:
                raise ValueError(f"{name} must be > 0 seconds")
        self.url = url.rstrip("/") if url else None
        self.service = service
        self.environment = environment
        self.default = default
        self.text_sample_rate = text_sample_rate
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.reconnect_min = reconnect_min
        self.reconnect_max = max(reconnect_max, reconnect_min)
        self.stream_read_timeout = stream_read_timeout
        self.timeout = timeout
        self.flush_interval = flush_interval
        self._token = token
        self._transport = transport
        self._clock = clock
        self._stream_enabled = stream and self.url is not None
        self._breaker_policy = _breaker.BreakerPolicy(
            breaker_failures, breaker_window, breaker_cooldown, breaker_trial_calls
        )
        self._defaults: dict[tuple[str, str | None], str] = {}
        for k, mode in (defaults or {}).items():
            wf, _, act = k.partition(".")
            self.set_default(wf, act or None, mode)

        if lkg_path is AUTO:
            self.lkg_path: Path | None = default_lkg_path(self.url, service, environment)
        elif lkg_path is None:
            self.lkg_path = None
        else:
            self.lkg_path = Path(cast("str | os.PathLike[str]", lkg_path))

        self._breakers: dict[str, _breaker.LocalBreaker] = {}
        self._contracts = ToolContracts()
        self._listeners: list[Listener] = []
        self._closed = False
        self._started = False
        self._init_process_state()
        self._queue = EventQueue(queue_size, batch_size, self._wake)
        self._lkg_force = False

        self._index: Index | None = None
        self._state = _State(None, frozenset())
        self._last_confirmed: float | None = None
        self._server_backwards: tuple[int, int] | None = None  # (revision, times seen) from polls
        self._lkg_dirty = False
        self._stale_warned = False
        self._seen_actions: set[tuple[str, str | None]] = set()
        self.started_at = clock()
        self._load_lkg()
        _GUARDS.add(self)
        if start:
            self.start()

    # ----- lifecycle ------------------------------------------------------------------------------------

    def _init_process_state(self) -> None:
        """Everything that belongs to one process (recreated in a forked child)."""
        self.client_id = uuid.uuid4().hex
        self.pid = os.getpid()
        self._trace_prefix = f"{random.getrandbits(64):016x}"
        self._trace_seq = itertools.count(random.getrandbits(48))
        self._apply_lock = threading.Lock()
        self._breaker_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._http: httpx.Client | None = None
        self._stream_sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._counters = {"reconnects": 0, "resyncs": 0, "patches": 0, "snapshots": 0, "ignored": 0,
                          "polls": 0, "heartbeats": 0, "heartbeat_failures": 0, "send_failures": 0}
        self._last_error: str | None = None

    def start(self) -> None:
        """Start the background threads (done by the constructor unless ``start=False``)."""
        if self._started or self._closed:
            return
        self._started = True
        if self.url is not None:
            self._http = self._make_client()
        w = threading.Thread(target=self._run_worker, name=f"codeblue-guard-worker-{self.service}", daemon=True)
        self._threads.append(w)
        if self._stream_enabled:
            s = threading.Thread(target=self._run_stream, name=f"codeblue-guard-stream-{self.service}", daemon=True)
            self._threads.append(s)
        for t in self._threads:
            t.start()

    def _make_client(self) -> httpx.Client:
        headers = {"User-Agent": f"codeblue-sdk/{SDK_VERSION}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return httpx.Client(
            base_url=self.url or "", headers=headers, timeout=self.timeout, transport=self._transport,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        )

    def close(self, timeout: float = 5.0) -> None:
        """Flush queued events (for up to `timeout` s), tell the server this Guard is leaving, stop threads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._shutdown_stream()
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:  # close() called from a listener runs on one of these threads
                t.join(max(0.0, deadline - time.monotonic()))
        if self._http is not None:
            self._http.close()
        _GUARDS.discard(self)

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _after_fork_child(self) -> None:
        """In a forked child: new identity, new locks, a new HTTP client and new threads (the parent's
        sockets are left alone, never closed or shut down from here)."""
        if self._closed:
            return
        ready = self._ready.is_set()
        was_started = self._started
        self._init_process_state()
        self._queue.reset_after_fork(self._wake)
        self._contracts.reset_after_fork()
        for b in self._breakers.values():
            b.reset_after_fork()
        if ready:
            self._ready.set()
        self._started = False
        if was_started:
            self.start()

    # ----- the hot path -------------------------------------------------------------------------------

    def decide(
        self,
        workflow: str,
        action: str | None = None,
        tool: str | None = None,
        dependency: str | None = None,
        segment: str | None = None,
        tenant: str | None = None,
        key: str | None = None,
    ) -> Decision:
        """May this request take its normal path? Local, memoised; never does I/O, never raises."""
        st = self._state
        try:
            d = st.memo.get((workflow, action, tool, dependency, segment, tenant))
            if d.__class__ is Decision:
                return d
            if d is not None:
                return d.for_key(key)  # type: ignore[union-attr]
        except Exception:
            return self._error_decision(st, workflow, action)
        return self._decide_slow(st, (workflow, action, tool, dependency, segment, tenant), key)

    def _decide_slow(self, st: _State, req: Request, key: str | None) -> Decision:
        try:
            for v in req[1:]:
                if v is not None and not isinstance(v, str):
                    return self._error_decision(st, req[0], req[1])
            if not isinstance(req[0], str) or (key is not None and not isinstance(key, str)):
                return self._error_decision(st, req[0], req[1])
            if len(self._seen_actions) < 10_000:
                self._seen_actions.add((req[0], req[1]))
            found: Decision | Keyed
            if st.index is None:
                found = self._default_decision(req[0], req[1])
            else:
                found = evaluate(st.index, req)
            dep = req[3]
            if dep is not None and dep in st.tripped:
                got = found.for_key(key) if isinstance(found, Keyed) else found
                if not got.allowed:
                    return got
                br = self._breakers.get(dep)
                if br is not None and not br.allow():
                    return Decision(
                        allowed=False, reason=f"local breaker for {dep} is {br.current()}",
                        revision=st.revision, control_type="breaker", source="local_breaker",
                    )
                return got
            memo = st.memo
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[req] = found
            return found.for_key(key) if isinstance(found, Keyed) else found
        except Exception:
            log.exception("codeblue guard: decide failed; answering with the default")
            return self._error_decision(st, req[0], req[1])

    def _mode(self, workflow: Any, action: Any) -> str:
        try:
            return self._defaults.get((workflow, action)) or self._defaults.get((workflow, None)) or self.default
        except TypeError:
            return self.default

    def _default_decision(self, workflow: str, action: str | None) -> Decision:
        mode = self._mode(workflow, action)
        what = f"{workflow}.{action}" if action else workflow
        if mode == FAIL_OPEN:
            return Decision(True, reason=f"no controls snapshot loaded: {what} fails open", source="default")
        return Decision(False, reason=f"no controls snapshot loaded: {what} fails closed", source="default")

    def _error_decision(self, st: _State, workflow: Any, action: Any) -> Decision:
        mode = self._mode(workflow, action)
        return Decision(
            allowed=mode == FAIL_OPEN,
            reason=f"invalid decide() arguments (workflow and scope values must be strings); {mode} applies",
            revision=st.revision, source="error",
        )

    # ----- configs and versions ------------------------------------------------------------------------

    def config(self, kind: str, name: str, key: str | None = None) -> ConfigValue | None:
        """The version of config `kind/name` this request gets (stable, or the rolling-out candidate by
        `key`) and its content; None when the snapshot does not have it."""
        st = self._state
        if st.index is None:
            return None
        mk = (kind, name, key)
        try:
            if mk in st.cmemo:
                return st.cmemo[mk]
            out = config_for(st.index, kind, name, key)
            if len(st.cmemo) >= _SMALL_MEMO_MAX:
                st.cmemo.clear()
            st.cmemo[mk] = out
            return out
        except Exception:
            log.exception("codeblue guard: config(%r, %r) failed", kind, name)
            return None

    def versions(self, workflow: str, key: str | None = None) -> dict[str, str]:
        """``{"<kind>/<name>": version}`` for the configs `workflow` uses, as served to `key`."""
        st = self._state
        if st.index is None:
            return {}
        mk = (workflow, key)
        try:
            got = st.vmemo.get(mk)
            if got is None:
                got = versions_for(st.index, workflow, key)
                if len(st.vmemo) >= _SMALL_MEMO_MAX:
                    st.vmemo.clear()
                st.vmemo[mk] = got
            return got.copy()
        except Exception:
            log.exception("codeblue guard: versions(%r) failed", workflow)
            return {}

    # ----- defaults and the decorator ------------------------------------------------------------------

    def set_default(self, workflow: str, action: str | None, mode: str) -> None:
        """What `workflow` (or one `action` of it) does while no snapshot is loaded: fail_open or fail_closed."""
        if mode not in _MODES:
            raise ValueError(f"default for {workflow}.{action or '*'} must be fail_open or fail_closed, got {mode!r}")
        if not workflow:
            raise ValueError("a default needs a workflow name")
        self._defaults[(workflow, action)] = mode
        if hasattr(self, "_state"):
            with self._apply_lock:
                self._state = _State(self._state.index, self._state.tripped)  # memoised defaults are stale

    def action(
        self,
        workflow: str,
        action: str,
        *,
        fallback: Callable[..., Any] | None = None,
        default: str | None = None,
        tool: str | None = None,
        dependency: str | None = None,
        segment: str | Callable[..., str | None] | None = None,
        tenant: str | Callable[..., str | None] | None = None,
        key: str | Callable[..., str | None] | None = None,
    ) -> _Action:
        """Guard an action path: as a decorator, the function runs only when allowed, else `fallback` runs
        with the same arguments (no fallback: `Blocked` is raised). As a context manager, it yields the
        Decision. `segment`, `tenant` and `key` may be callables over the function's arguments."""
        return _Action(self, workflow, action, fallback=fallback, default=default, tool=tool,
                       dependency=dependency, segment=segment, tenant=tenant, key=key)

    # ----- breakers ------------------------------------------------------------------------------------

    def report(self, dependency: str, ok: bool) -> None:
        """The outcome of one call to `dependency`, for this process's automatic breaker. Never raises."""
        try:
            br = self._breakers.get(dependency)
            if br is None:
                if ok:
                    return
                with self._breaker_lock:
                    br = self._breakers.get(dependency)
                    if br is None:
                        br = self._breakers[dependency] = _breaker.LocalBreaker(
                            dependency, self._breaker_policy, self._clock
                        )
            if br.record(bool(ok)):
                log.warning("codeblue guard: local breaker for %s is now %s", dependency, br.state)
                self._rebuild_state()
        except Exception:
            log.exception("codeblue guard: report(%r) failed", dependency)

    def _rebuild_state(self) -> None:
        with self._apply_lock:
            tripped = frozenset(n for n, b in self._breakers.items() if b.state != _breaker.CLOSED)
            self._state = _State(self._index, tripped)

    @property
    def breakers(self) -> dict[str, dict[str, Any]]:
        """Every dependency with a local breaker or a server `breaker` control, and its effective state."""
        out: dict[str, dict[str, Any]] = {}
        for name, b in list(self._breakers.items()):
            info = b.as_dict()
            out[name] = {"state": info["state"], "local": info, "server": None}
        index = self._index
        if index is not None:
            for r in index.rules:
                dep = r.scope[3]
                if r.type != "breaker" or dep is None:
                    continue
                entry = out.setdefault(dep, {"state": _breaker.CLOSED, "local": None, "server": None})
                server_state = _breaker.OPEN if r.admit is None else _breaker.HALF_OPEN
                entry["server"] = {"state": server_state, "control_id": r.id, "reason": r.reason,
                                   "scope": dict(zip(("workflow", "action", "tool", "dependency", "segment",
                                                      "tenant"), (v or "*" for v in r.scope), strict=True))}
                rank = {_breaker.CLOSED: 0, _breaker.HALF_OPEN: 1, _breaker.OPEN: 2}
                if rank[server_state] > rank[entry["state"]]:
                    entry["state"] = server_state
        return out

    # ----- reporting -----------------------------------------------------------------------------------

    def trace(
        self,
        workflow: str,
        *,
        subject: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        segment: str | None = None,
        key: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Trace:
        """A request of `workflow` whose events share ids and versions (served to `key`, default `subject`)."""
        return Trace(self, workflow, subject=subject, session_id=session_id, trace_id=trace_id,
                     segment=segment, key=key, attributes=attributes)

    def complaint(
        self,
        workflow: str,
        text: str,
        *,
        subject: str | None = None,
        channel: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        key: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a complaint or user report about `workflow`."""
        try:
            ev: dict[str, Any] = {"time": self._clock(), "workflow": workflow, "kind": "complaint", "text": text}
            for name, val in (("subject", subject), ("channel", channel), ("session_id", session_id),
                              ("trace_id", trace_id), ("service", self.service or None)):
                if val is not None:
                    ev[name] = val
            versions = self.versions(workflow, key=key if key is not None else subject)
            if versions:
                ev["versions"] = versions
            if attributes:
                ev["attributes"] = dict(attributes)
            self._queue.put(ev)
        except Exception:
            log.exception("codeblue guard: complaint() failed")

    def _check_tool_args(
        self, tool: str, arguments: Any, key: str | None
    ) -> tuple[bool | None, dict[str, Any], tuple[str, str] | None]:
        cfg = self.config("tool_contract", tool, key=key)
        if cfg is None:
            return None, {}, None
        valid, extra = self._contracts.check(tool, cfg.version, cfg.content, arguments)
        return valid, extra, (cfg.ident, cfg.version)

    # ----- state visible to the application ------------------------------------------------------------

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until a snapshot from the server is loaded; False if none arrived within `timeout` s (the
        Guard then answers from the last-known-good file or the defaults, see `source`)."""
        return self._ready.wait(timeout)

    @property
    def revision(self) -> int:
        return self._state.revision

    @property
    def source(self) -> str:
        """``snapshot`` (from the server), ``lkg`` (the file) or ``default`` (nothing loaded)."""
        return self._state.source

    @property
    def stale_for(self) -> float:
        """Seconds since the server last confirmed the revision in force (inf when it never did)."""
        last = self._last_confirmed
        if last is None:
            return math.inf
        return max(0.0, self._clock() - last)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> dict[str, Any]:
        q = self._queue
        return {
            "revision": self._state.revision,
            "source": self._state.source,
            "stale_for": self.stale_for,
            "connected": self._connected,
            "events_queued": len(q),
            "events_enqueued": q.enqueued,
            "events_sent": q.sent,
            "events_dropped": q.dropped,
            "events_rejected": q.rejected,
            "queue_capacity": q.capacity,
            **self._counters,
            "last_error": self._last_error,
        }

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(kind, revision)`` on ``ready`` (first server snapshot), ``changed`` (a new revision or
        an expiry applied), ``stale`` and ``fresh``; from a background thread. Returns an unsubscribe."""
        self._listeners.append(fn)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(fn)

        return remove

    def _emit(self, kind: str, revision: int) -> None:
        for fn in list(self._listeners):
            try:
                fn(kind, revision)
            except Exception:
                log.exception("codeblue guard: a %s listener failed", kind)

    def heartbeat_payload(self, *, closing: bool = False) -> dict[str, Any]:
        """What the Guard reports about itself to ``POST /v1/sdk/heartbeat``."""
        st = self._state
        actions: dict[str, str] = {}
        for wf, act in sorted(set(self._seen_actions) | set(self._defaults), key=lambda p: (p[0], p[1] or "")):
            actions[f"{wf}.{act}" if act else wf] = self._mode(wf, act)
        stale = self.stale_for
        q = self._queue
        return {
            "client_id": self.client_id,
            "service": self.service,
            "environment": self.environment,
            "pid": self.pid,
            "host": socket.gethostname(),
            "sdk_version": SDK_VERSION,
            "started_at": self.started_at,
            "revision": st.revision,
            "source": st.source,
            "stale_for": None if math.isinf(stale) else round(stale, 3),
            "connected": self._connected,
            "default": self.default,
            "defaults": actions,
            "on_defaults": st.index is None,
            "breakers": {n: b.as_dict() for n, b in list(self._breakers.items())},
            "events": {"queued": len(q), "sent": q.sent, "dropped": q.dropped, "rejected": q.rejected},
            "stream": {k: self._counters[k] for k in ("reconnects", "resyncs", "patches", "snapshots", "ignored")},
            "last_error": self._last_error,
            "closing": closing,
        }

    # ----- applying snapshots and patches -------------------------------------------------------------

    def _install(self, index: Index) -> None:
        """Swap in a compiled snapshot (caller holds the apply lock)."""
        previous = self._index
        self._index = index
        tripped = frozenset(n for n, b in self._breakers.items() if b.state != _breaker.CLOSED)
        self._state = _State(index, tripped)
        if index.source != "lkg":
            self._lkg_dirty = True
            self._wake.set()
        if previous is None or previous.revision != index.revision:
            log.info("codeblue guard: controls revision %d in force (%s)", index.revision, index.source)

    def _confirm(self) -> None:
        self._last_confirmed = self._clock()
        if self._stale_warned:
            self._stale_warned = False
            log.warning("codeblue guard: controls are fresh again (revision %d)", self._state.revision)
            self._emit("fresh", self._state.revision)

    def _apply_snapshot(self, snap: Any, *, source: str) -> bool:
        """Install a full snapshot from the server if it is not older than what is in force."""
        with self._apply_lock:
            rev = snap.get("revision") if isinstance(snap, dict) else None
            if isinstance(rev, bool) or not isinstance(rev, int):
                raise SnapshotError("snapshot.revision: expected an integer")
            env = snap.get("environment")
            if env is not None and env != self.environment:
                raise SnapshotError(f"snapshot is for environment {env!r}, not {self.environment!r}")
            cur = self._index
            from_server = cur is not None and cur.source != "lkg"
            if from_server and cur is not None and rev < cur.revision:
                if source != "poll":
                    self._counters["ignored"] += 1
                    return False
                seen = self._server_backwards
                count = seen[1] + 1 if seen is not None and seen[0] == rev else 1
                self._server_backwards = (rev, count)
                if count < 2:
                    self._counters["ignored"] += 1
                    return False
                log.warning("codeblue guard: the server's revision went back from %d to %d twice in a row; "
                            "taking the server's state (was its database restored?)", cur.revision, rev)
                self._lkg_force = True
            self._server_backwards = None
            if from_server and cur is not None and rev == cur.revision:
                self._confirm()
                return False
            index = compile_snapshot(snap, source=source, now=self._clock())
            self._install(index)
            self._counters["snapshots"] += 1
            self._confirm()
        first = not self._ready.is_set()
        self._ready.set()
        self._emit("ready" if first else "changed", index.revision)
        return True

    def _apply_patch(self, patch: Any) -> str:
        """Apply one patch: ``applied``, ``ignored`` (duplicate or older) or ``gap`` (resync needed)."""
        with self._apply_lock:
            if not isinstance(patch, dict):
                raise SnapshotError("patch: expected an object")
            rev, prev = patch.get("revision"), patch.get("prev")
            if isinstance(rev, bool) or not isinstance(rev, int):
                raise SnapshotError("patch.revision: expected an integer")
            cur = self._index
            if cur is not None and rev <= cur.revision:
                self._counters["ignored"] += 1
                return "ignored"
            if cur is None or prev != cur.revision:
                return "gap"
            snap = apply_patch(cur.raw, patch)
            index = compile_snapshot(snap, source="stream", now=self._clock())
            self._install(index)
            self._counters["patches"] += 1
            self._confirm()
        first = not self._ready.is_set()
        self._ready.set()
        self._emit("ready" if first else "changed", index.revision)
        return "applied"

    def _fetch_snapshot(self, source: str) -> bool:
        http = self._http
        if http is None:
            return False
        r = http.get("/v1/controls/snapshot", params={"environment": self.environment, "content": "true"})
        if r.status_code != 200:
            self._note_http_error("snapshot", r)
            return False
        return self._apply_snapshot(r.json(), source=source)

    def _note_http_error(self, what: str, r: httpx.Response) -> None:
        detail = ""
        with contextlib.suppress(Exception):
            body = r.json()
            detail = f": {body.get('detail') or body.get('title')}" if isinstance(body, dict) else ""
        msg = f"{what}: HTTP {r.status_code}{detail}"
        if msg != self._last_error:
            level = logging.ERROR if r.status_code in (401, 403) else logging.WARNING
            log.log(level, "codeblue guard: %s", msg)
        self._last_error = msg

    # ----- the last-known-good file ---------------------------------------------------------------------

    def _load_lkg(self) -> None:
        if self.lkg_path is None:
            return
        try:
            saved = lkg.load(self.lkg_path, environment=self.environment)
        except (lkg.LkgError, OSError) as e:
            log.warning("codeblue guard: ignoring the last-known-good file %s: %s", self.lkg_path, e)
            return
        if saved is None:
            return
        try:
            index = compile_snapshot(saved.snapshot, source="lkg", now=self._clock())
        except SnapshotError as e:
            log.warning("codeblue guard: ignoring the last-known-good file %s: %s", self.lkg_path, e)
            return
        with self._apply_lock:
            self._install(index)
        self._last_confirmed = saved.saved_at or None
        log.info("codeblue guard: loaded last-known-good revision %d from %s", index.revision, self.lkg_path)

    def _persist_lkg(self) -> None:
        index = self._index
        if self.lkg_path is None or index is None or index.source == "lkg":
            self._lkg_dirty = False
            return
        self._lkg_dirty = False
        force, self._lkg_force = self._lkg_force, False
        try:
            lkg.save(self.lkg_path, dict(index.raw), environment=self.environment,
                     saved_at=self._last_confirmed or self._clock(), force=force)
        except (OSError, TypeError, ValueError) as e:
            log.warning("codeblue guard: could not write the last-known-good file %s: %s", self.lkg_path, e)

    # ----- the stream thread ----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.reconnect_max, self.reconnect_min * float(1 << min(attempt, 20)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _shutdown_stream(self) -> None:
        sock = self._stream_sock
        self._stream_sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _run_stream(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            got = False
            try:
                got = self._stream_once()
            except (httpx.HTTPError, OSError) as e:
                if not self._stop.is_set():
                    msg = f"stream: {type(e).__name__}: {e}"
                    if msg != self._last_error:
                        log.warning("codeblue guard: %s", msg)
                    self._last_error = msg
            except Exception:
                if not self._stop.is_set():
                    log.exception("codeblue guard: the controls stream failed")
            finally:
                self._connected = False
                self._stream_sock = None
            if self._stop.is_set():
                break
            attempt = 0 if got else attempt + 1
            self._counters["reconnects"] += 1
            self._stop.wait(self._backoff(attempt))

    def _stream_once(self) -> bool:
        """One connection; True when it delivered at least one message."""
        http = self._http
        if http is None:
            return False
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        cur = self._index
        if cur is not None and cur.source != "lkg":
            headers["Last-Event-ID"] = str(cur.revision)
        got = False
        timeout = httpx.Timeout(self.timeout, read=self.stream_read_timeout)
        with http.stream("GET", "/v1/controls/stream", params={"environment": self.environment},
                         headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                r.read()
                self._note_http_error("stream", r)
                if r.status_code in (401, 403, 404):
                    self._stop.wait(self.reconnect_max)  # a configuration problem: don't hammer
                return False
            stream = r.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            self._stream_sock = sock if isinstance(sock, socket.socket) else None
            if self._stop.is_set():
                return False
            self._connected = True
            for msg in sse.parse(r.iter_lines()):
                if self._stop.is_set():
                    break
                got = True
                self._on_message(msg)
        return got

    def _on_message(self, msg: sse.SseMessage) -> None:
        if msg.comment is not None:
            if self._index is not None and self._index.source != "lkg":
                self._confirm()
            return
        try:
            payload = _loads(msg.data)
            if msg.event == "snapshot":
                self._apply_snapshot(payload, source="stream")
            elif msg.event == "patch":
                outcome = self._apply_patch(payload)
                if outcome == "gap":
                    self._counters["resyncs"] += 1
                    log.info("codeblue guard: revision gap before %s; resyncing from the snapshot",
                             payload.get("revision"))
                    self._fetch_snapshot("stream")
            # other event names are for newer clients; ignore them
        except (SnapshotError, ValueError) as e:
            self._last_error = f"stream: bad {msg.event} message: {e}"
            log.warning("codeblue guard: %s; resyncing from the snapshot", self._last_error)
            self._counters["resyncs"] += 1
            self._fetch_snapshot("stream")

    # ----- the worker thread ----------------------------------------------------------------------------

    def _run_worker(self) -> None:
        now = time.monotonic()
        next_heartbeat = now + min(2.0, self.heartbeat_interval) if self.url else math.inf
        # Without the stream, poll at once; with it, a first poll soon after start covers a stream that cannot
        # connect (a proxy that buffers SSE, say) while the snapshot endpoint works.
        next_poll = (now + (0.0 if not self._stream_enabled else min(5.0, self.poll_interval) * random.uniform(1.0, 1.5))
                     if self.url else math.inf)
        early_poll = self._stream_enabled
        reported_blind = False
        # A heartbeat that was not delivered is retried with backoff (1 s doubling to the interval), and at once
        # when the server is heard from again (it confirmed a revision since the failure): the fleet view should
        # not show a Guard's pre-outage report for a whole interval after the server is back.
        heartbeat_backoff = 0.0
        failed_at_confirm: float | None = None
        next_flush = now + self.flush_interval
        send_backoff = 0.0
        next_send_ok = now
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            try:
                if self.url is not None and len(self._queue) and now >= next_send_ok and (
                    stopping or len(self._queue) >= self._queue.batch_size or now >= next_flush
                ):
                    ok = self._flush(stopping)
                    if ok:
                        send_backoff = 0.0
                        next_send_ok = now
                    else:
                        send_backoff = min(30.0, max(1.0, send_backoff * 2))
                        next_send_ok = now + send_backoff * random.uniform(0.75, 1.0)
                    next_flush = time.monotonic() + self.flush_interval
                elif not len(self._queue):
                    next_flush = now + self.flush_interval
                if stopping:
                    if self.url is not None:
                        self._send_heartbeat(closing=True)
                    if self._lkg_dirty:
                        self._persist_lkg()
                    return
                if now >= next_poll:
                    # the early poll is only for a Guard the stream has not served yet
                    if not (early_poll and self._ready.is_set()):
                        self._counters["polls"] += 1
                        try:
                            self._fetch_snapshot("poll")
                        except (httpx.HTTPError, OSError, SnapshotError, ValueError) as e:
                            self._last_error = f"poll: {type(e).__name__}: {e}"
                    early_poll = False
                    interval = self.poll_interval if self._ready.is_set() else min(self.poll_interval, 5.0)
                    next_poll = time.monotonic() + interval * random.uniform(0.8, 1.0)
                # A report that says "on defaults" is corrected as soon as the first snapshot lands (`_install`
                # wakes this thread), not a heartbeat interval later: the fleet view would show a healthy Guard as
                # deciding from its defaults (failing open, with fail_open ones) for up to 30 s.
                heard_again = heartbeat_backoff > 0 and self._last_confirmed != failed_at_confirm
                if now >= next_heartbeat or heard_again or (reported_blind and self._state.index is not None):
                    delivered = self._send_heartbeat()
                    if delivered is None:
                        heartbeat_backoff = min(self.heartbeat_interval, max(1.0, heartbeat_backoff * 2))
                        failed_at_confirm = self._last_confirmed
                        next_heartbeat = time.monotonic() + heartbeat_backoff * random.uniform(0.75, 1.0)
                    else:
                        reported_blind = delivered
                        heartbeat_backoff = 0.0
                        next_heartbeat = time.monotonic() + self.heartbeat_interval * random.uniform(0.9, 1.1)
                if self._lkg_dirty:
                    self._persist_lkg()
                self._expire()
                self._check_stale()
            except Exception:
                log.exception("codeblue guard: background work failed")
                if stopping:
                    return  # close() may have closed the HTTP client after its timeout: never retry forever
            now = time.monotonic()
            wait = min(next_poll, next_heartbeat) - now
            if self.url is not None and len(self._queue):
                wait = min(wait, max(next_flush, next_send_ok) - now)
            index = self._index
            if index is not None and index.next_expiry < math.inf:
                wait = min(wait, index.next_expiry - self._clock())
            wait = min(wait, max(self.stale_after / 4, 0.05))
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def _flush(self, stopping: bool) -> bool:
        """Send queued events in batches; False when the server could not take them (they stay queued)."""
        http = self._http
        if http is None:
            return False
        q = self._queue
        while len(q):
            batch, key = q.take_batch(q.batch_size)
            if not batch:
                return True
            try:
                body = dumps(batch).encode()
            except (TypeError, ValueError):
                body = _dumps_lenient(batch).encode()
            # The key lets the server store a batch once however often it is sent: a batch whose answer was
            # lost (timeout, dropped connection, 5xx) is sent again unchanged under the same key.
            headers = {"Content-Type": "application/json", "Idempotency-Key": key}
            try:
                r = http.post("/v1/events", content=body, headers=headers)
            except (httpx.HTTPError, OSError) as e:
                q.hold(batch, key)
                self._counters["send_failures"] += 1
                self._last_error = f"events: {type(e).__name__}: {e}"
                return False
            if r.status_code < 300:
                q.sent += len(batch)
                rejected = _count_rejected(r)
                if rejected:
                    q.rejected += rejected
                    q.sent -= rejected
            elif r.status_code == 413 and len(batch) > 1:  # nothing stored: halves, each under a key of its own
                half = len(batch) // 2
                q.give_back(batch[half:])
                q.give_back(batch[:half])
                q.batch_size = max(1, q.batch_size // 2)
            elif r.status_code in (400, 413, 422):
                q.rejected += len(batch)
                self._note_http_error("events", r)
            else:  # 401/403/404/408/429/5xx: the server may take them later
                q.hold(batch, key)
                self._counters["send_failures"] += 1
                self._note_http_error("events", r)
                return False
            if not stopping and len(q) < q.batch_size:
                return True
        return True

    def _send_heartbeat(self, closing: bool = False) -> bool | None:
        """Report the Guard's state. None when the report was not delivered; else whether the server now holds a
        report that it decides from defaults (one sent before the first snapshot arrived), so the worker can
        correct it as soon as one does."""
        http = self._http
        if http is None:
            return None
        payload = self.heartbeat_payload(closing=closing)
        try:
            r = http.post("/v1/sdk/heartbeat", content=dumps(payload).encode(),
                          headers={"Content-Type": "application/json"}, timeout=min(self.timeout, 5.0))
            if r.status_code < 300:
                self._counters["heartbeats"] += 1
                return bool(payload["on_defaults"])
            self._counters["heartbeat_failures"] += 1
            self._note_http_error("heartbeat", r)
        except (httpx.HTTPError, OSError) as e:
            self._counters["heartbeat_failures"] += 1
            self._last_error = f"heartbeat: {type(e).__name__}: {e}"
        return None

    def _expire(self) -> None:
        index = self._index
        if index is None or index.next_expiry > self._clock():
            return
        with self._apply_lock:
            index = self._index
            if index is None or index.next_expiry > self._clock():
                return
            rebuilt = compile_snapshot(index.raw, source=index.source, now=self._clock())
            self._index = rebuilt
            tripped = frozenset(n for n, b in self._breakers.items() if b.state != _breaker.CLOSED)
            self._state = _State(rebuilt, tripped)
        log.info("codeblue guard: a control expired; %d restrictive controls in force", len(rebuilt.rules))
        self._emit("changed", rebuilt.revision)

    @property
    def _stale_threshold(self) -> float:
        # Without the stream only polls confirm the revision: don't call every poll interval "stale".
        return self.stale_after if self._stream_enabled else max(self.stale_after, self.poll_interval * 1.5)

    def _check_stale(self) -> None:
        stale = self.stale_for
        threshold = self._stale_threshold
        if self.url is None or self._stale_warned or stale <= threshold:
            return
        if math.isinf(stale) and self._clock() - self.started_at <= threshold:
            return  # just started: give the first connection its chance before warning
        self._stale_warned = True
        st = self._state
        what = {"snapshot": f"revision {st.revision} from the server", "lkg": f"last-known-good revision {st.revision}",
                "default": "the per-action defaults in code"}[st.source]
        since = "never confirmed" if math.isinf(stale) else f"{stale:.0f} s stale"
        log.warning("codeblue guard: controls are %s; serving %s (%s)", since, what, self._last_error or "no error")
        self._emit("stale", st.revision)


def _loads(text: str) -> Any:
    import json

    return json.loads(text)


def _dumps_lenient(obj: Any) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"), default=str)


def _count_rejected(r: httpx.Response) -> int:
    """Events the server refused inside an accepted batch, when the response says so."""
    try:
        body = r.json()
    except ValueError:
        return 0
    if not isinstance(body, dict):
        return 0
    for name in ("rejected", "errors"):
        val = body.get(name)
        if isinstance(val, int) and not isinstance(val, bool):
            return val
        if isinstance(val, list):
            return len(val)
    return 0


# ----- fork safety -------------------------------------------------------------------------------------

_GUARDS: weakref.WeakSet[Guard] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for g in list(_GUARDS):
        try:
            g._after_fork_child()
        except Exception:  # pragma: no cover - must never break the child
            log.exception("codeblue guard: restarting after fork failed")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def iter_guards() -> Iterator[Guard]:
    """The live Guards of this process (for integrations such as the OpenFeature provider)."""
    return iter(list(_GUARDS))
