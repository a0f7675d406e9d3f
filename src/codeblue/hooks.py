"""A tiny in-process publish/subscribe used by the composition root (app.py) to wire domains together.

Domains emit named events (``incident.opened``); subscribers registered at start-up react inside the same
database transaction, so side effects they queue (outbox rows, timeline entries) commit or roll back with
the change that caused them. Domains never import each other's subscribers by name.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., None]


class Hooks:
    def __init__(self) -> None:
        self._subs: dict[str, list[Handler]] = defaultdict(list)

    def on(self, topic: str, handler: Handler) -> None:
        self._subs[topic].append(handler)

    def emit(self, topic: str, **kwargs: Any) -> None:
        """Call every subscriber in registration order; an exception propagates and aborts the transaction."""
        for handler in list(self._subs.get(topic, ())):
            handler(**kwargs)

    def clear(self) -> None:
        self._subs.clear()


#: The process-wide hooks. Tests that build several apps call ``hooks.clear()`` via ``create_app``.
hooks = Hooks()
