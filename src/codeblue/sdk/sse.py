"""A small Server-Sent Events parser (the WHATWG event-stream format) over an iterator of lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str  # "message" when the stream did not name it; "" for a comment line
    data: str
    id: str | None
    comment: str | None = None


def parse(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Yield one SseMessage per dispatched event, and one per comment line (so a caller sees heartbeats)."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield SseMessage(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            yield SseMessage("", "", last_id, comment=line[1:].strip())
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\x00" not in value:
            last_id = value
        # "retry" and unknown fields are ignored, as the format says.
