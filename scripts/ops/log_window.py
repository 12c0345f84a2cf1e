"""What `ops readiness` read from a log group in its window: pages, lines, time, and a SHA-256 over
every event read (what a recorded verdict was judged on)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reading:
    log_group: str
    start: dt.datetime
    end: dt.datetime
    pages: int = 0
    events: int = 0
    seconds: float = 0.0
    lookups: int = 0
    # SHA-256 over every event read (stream, time, message): what a recorded verdict was judged on.
    digest: Any = field(default_factory=hashlib.sha256)
    # The last event time (ms) of each stream read (a stream per beacon instance): a beacon whose
    # log shipping stopped has none in the recent window, and its devices would be invisible.
    stream_last: dict[str, int] = field(default_factory=dict)
