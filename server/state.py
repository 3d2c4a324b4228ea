"""What the app holds on `app.state.gateway`, and the shutdown drain."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .backends.base import Backend
from .limits import Admission
from .live import LiveStats
from .metrics import Metrics
from .settings import GatewaySettings


class ShuttingDown(Exception):
    """Raised inside a generation when the server's shutdown grace period has run out."""


@dataclass
class GatewayState:
    settings: GatewaySettings
    backend: Backend
    metrics: Metrics
    admission: Admission
    live: LiveStats = field(default_factory=LiveStats)
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    # Queues of the generations in flight: on shutdown each gets a ShuttingDown after the grace period.
    inflight: set[asyncio.Queue] = field(default_factory=set)

    def begin_shutdown(self) -> None:
        """Refuse new work now; stop what is still running after `shutdown_grace_s`."""
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(self.settings.shutdown_grace_s, self._expire_inflight)

    def _expire_inflight(self) -> None:
        for q in list(self.inflight):
            q.put_nowait(ShuttingDown())
