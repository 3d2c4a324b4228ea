"""Prometheus metrics (prometheus-client), on a registry per app so that apps never share state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .stats import OrthrusStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, max_block_size: int = 64):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("orthrus_requests", "API requests by route and outcome status (499: the client "
                                "left first; a stream that fails after it started: its error's status)",
                                ["route", "status"], registry=r)
        self.aborted = Counter("orthrus_requests_aborted", "Sequences started, then stopped before they finished "
                               "(client gone, shutdown); refused and failed requests count by status",
                               registry=r)
        self.prompt_tokens = Counter("orthrus_prompt_tokens", "Prompt tokens", registry=r)
        self.generation_tokens = Counter("orthrus_generation_tokens", "Generated tokens", registry=r)
        self.ttft = Histogram("orthrus_time_to_first_token_seconds", "Request arrival to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("orthrus_inter_token_latency_seconds", "Gap between tokens (a step's gap is shared by "
                             "the tokens it committed)", buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("orthrus_e2e_request_latency_seconds", "Request arrival to last token",
                             buckets=LATENCY_BUCKETS, registry=r)
        tau_buckets = tuple(float(b) for b in range(1, max_block_size + 1))
        self.tau = Histogram("orthrus_tau", "Tokens per step (bonus included), per finished sequence",
                             buckets=tau_buckets, registry=r)
        self.steps = Counter("orthrus_decode_steps", "Decode steps of finished sequences", registry=r)
        self.accepted = Counter("orthrus_accepted_drafts", "Accepted drafts by draft position (1 = first draft)",
                                ["position"], registry=r)
        self.accept_length = Counter("orthrus_accept_length_steps", "Steps by number of drafts accepted",
                                     ["accepted"], registry=r)
        self.queue_depth = Gauge("orthrus_queue_depth", "Requests waiting for a gateway slot", registry=r)
        self.active = Gauge("orthrus_active_requests", "Requests holding a gateway slot", registry=r)
        self.backend_running = Gauge("orthrus_backend_running_sequences", "Sequences running in the backend",
                                     registry=r)
        self.backend_waiting = Gauge("orthrus_backend_waiting_sequences", "Sequences queued inside the backend",
                                     registry=r)
        # From the engine's block-size policy (embedded backend), read at each scrape.
        self.block_steps = Gauge("orthrus_block_size_request_steps", "Request-steps decoded at each block size "
                                 "since start (1: plain AR steps of the adaptive policy)", ["block_size"], registry=r)
        self.block_tau = Gauge("orthrus_block_size_tau", "Tokens per request-step at each block size since start",
                               ["block_size"], registry=r)
        self.draft_acceptance = Gauge("orthrus_draft_acceptance_rate", "The policy's recent estimate of P(draft i "
                                      "accepted | drafts before it accepted), by position i", ["position"], registry=r)

    def observe_sequence(self, stats: OrthrusStats | None) -> None:
        if stats is None or stats.num_steps == 0:
            return
        # Create every label value, zeros included, so each series exists from the first request on.
        for i in range(len(stats.accepted_per_position)):
            self.accepted.labels(position=str(i + 1))
        for n in range(len(stats.accept_length_histogram)):
            self.accept_length.labels(accepted=str(n))
        self.tau.observe(stats.tau)
        self.steps.inc(stats.num_steps)
        for i, n in enumerate(stats.accepted_per_position):
            if n:
                self.accepted.labels(position=str(i + 1)).inc(n)
        for n, count in enumerate(stats.accept_length_histogram):
            if count:
                self.accept_length.labels(accepted=str(n)).inc(count)

    def render(self, load: tuple[int, int], block_policy: dict | None = None) -> bytes:
        self.backend_running.set(load[0])
        self.backend_waiting.set(load[1])
        if block_policy is not None:
            for b, steps in block_policy["steps_by_block_size"].items():
                self.block_steps.labels(block_size=str(b)).set(steps)
                self.block_tau.labels(block_size=str(b)).set(block_policy["tau_by_block_size"][b])
            for i, rate in enumerate(block_policy["acceptance_by_position"]):
                self.draft_acceptance.labels(position=str(i + 1)).set(rate)
        return generate_latest(self.registry)
