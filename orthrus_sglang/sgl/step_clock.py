"""The seconds each decode step cost, for the adaptive block size (block_policy.StepCosts), with no host wait.

A step is timed twice: on the host around the worker's call (all of it on the CPU engine, where the
call runs the forward; the launches on CUDA) and, on CUDA, by two events around its GPU work. Its
cost is the larger. Both are read when SGLang hands the step's accept counts back
(on_verify_complete_cpu): the counts were copied to the host after the step's kernels, so its end
event has completed and reading it never waits. What the clock does not see: the scheduler's own
host work outside the call, the same for every block size.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import torch

MAX_PENDING = 8  # steps in flight are at most 2 (overlap); more means some were never reported back


@dataclass
class _Step:
    batch_size: int
    block_size: int
    host_start: float
    host_seconds: float = 0.0
    start_event: "torch.cuda.Event | None" = None
    end_event: "torch.cuda.Event | None" = None


class StepClock:
    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self._pending: deque[_Step] = deque()

    def start(self, batch_size: int, block_size: int) -> _Step:
        step = _Step(batch_size, block_size, time.perf_counter())
        if self.cuda:
            step.start_event = torch.cuda.Event(enable_timing=True)
            step.start_event.record()
        return step

    def stop(self, step: _Step) -> None:
        if self.cuda:
            step.end_event = torch.cuda.Event(enable_timing=True)
            step.end_event.record()
        step.host_seconds = time.perf_counter() - step.host_start
        self._pending.append(step)
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft()

    def finish(self, batch_size: int) -> tuple[int, float | None] | None:
        """(block size, seconds or None) of the oldest step in flight of this batch size; steps before it
        that were never reported (their batch did not reach result processing) are dropped."""
        while self._pending:
            step = self._pending.popleft()
            if step.batch_size != batch_size:
                continue
            seconds = step.host_seconds
            if step.end_event is not None:
                if not step.end_event.query():  # not expected: then this step gives no measurement
                    return step.block_size, None
                seconds = max(seconds, step.start_event.elapsed_time(step.end_event) / 1e3)
            return step.block_size, seconds
        return None
