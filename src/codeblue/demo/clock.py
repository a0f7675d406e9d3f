"""Stream time on the application side: the embedded server's accelerated clock, as the app sees it."""

from __future__ import annotations

import threading
import time

import httpx


class StreamClock:
    """The server's clock (`GET /healthz` → `time`), extrapolated at the server's speed.

    The simulated application stamps each request with the stream time it arrives at; the traffic thread
    pins that time while it handles the request (`pin`), so every event of one request carries it. Other
    threads (the SDK's worker) read the extrapolated server time.
    """

    def __init__(self, speed: float, server_time: float, wall: float) -> None:
        self.speed = speed
        self._s0 = server_time
        self._w0 = wall
        self._local = threading.local()

    @classmethod
    def sync(cls, client: httpx.Client, speed: float, samples: int = 7) -> StreamClock:
        """Read the server's clock a few times and keep the sample with the shortest round trip."""
        best: tuple[float, float, float] | None = None
        for _ in range(samples):
            w0 = time.time()
            r = client.get("/healthz")
            w1 = time.time()
            r.raise_for_status()
            rtt = w1 - w0
            if best is None or rtt < best[0]:
                best = (rtt, float(r.json()["time"]), (w0 + w1) / 2)
        assert best is not None
        return cls(speed, best[1], best[2])

    def server_now(self) -> float:
        return self._s0 + (time.time() - self._w0) * self.speed

    def wall_at(self, stream_t: float) -> float:
        """The wall-clock moment at which the server's clock shows `stream_t`."""
        return self._w0 + (stream_t - self._s0) / self.speed

    def pin(self, t: float | None) -> None:
        self._local.pinned = t

    def __call__(self) -> float:
        pinned = getattr(self._local, "pinned", None)
        return pinned if pinned is not None else self.server_now()
