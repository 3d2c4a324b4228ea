"""Where the SGLang scheduler's host time goes, from a py-spy profile of a bench run.

    py-spy record --subprocesses --rate 200 --format raw -o PROFILE.txt -- python -m bench.throughput ...
    python -m bench.host_profile PROFILE.txt [--rate 200] [--steps N] [--top 20]

Only the scheduler's event loop counts (stacks through ``Scheduler.event_loop_*``: engine start-up,
graph capture and the client are left out). One table per scheduler process, in the order they were
started (bench.throughput starts one engine per mode, in its mode order: AR first). For each phase of
a step: the samples whose stack passes through it (inclusive: a phase inside another counts in both),
their share, their seconds, and with ``--steps`` (the decode steps each engine made) milliseconds per
step. On a GPU the forward's row is the launches and whatever waits on the GPU, not the GPU work;
its eager row (prefills, and any decode batch without a CUDA graph) against its graph row says
whether a batch missed its graphs.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (label, frame names): a step's phases in SGLang's scheduler and the ORTHRUS worker (sgl/worker.py).
PHASES = (
    ("event loop (all)", ("event_loop_normal", "event_loop_overlap")),
    ("receive requests", ("recv_requests", "process_input_requests")),
    ("schedule the next batch", ("get_next_batch_to_run",)),
    ("run the batch", ("run_batch",)),
    ("  model forward (SGLang ModelRunner)", ("_forward_raw",)),
    ("    in a CUDA graph (load + replay)", ("decode_cuda_graph_runner:execute",)),
    ("    eager (prefill, or no graph for the batch)", ("eager_runner:execute",)),
    ("  attention planning (the backend's)", ("init_forward_metadata_out_graph", "init_forward_metadata")),
    ("  ORTHRUS: prefill (the target's extend)", ("orthrus:_prefill",)),
    ("  ORTHRUS: decode step", ("orthrus:_decode",)),
    ("  ORTHRUS: prepare the block", ("orthrus:prepare_block",)),
    ("  ORTHRUS: sampling rows", ("orthrus:row_sampling",)),
    ("  ORTHRUS: plan the verify forward", ("orthrus:plan_verify_forward",)),
    ("  ORTHRUS: accept", ("orthrus:accept",)),
    ("  ORTHRUS: commit", ("orthrus:commit",)),
    ("process the results", ("process_batch_result",)),
    ("  ORTHRUS: per-step statistics", ("orthrus:on_verify_complete_cpu",)),
    ("  stream the outputs", ("stream_output",)),
)
EVENT_LOOP = PHASES[0][1]


def frame_names(frame: str) -> tuple[str, ...]:
    """'Class.method (dir/file.py:12)' -> ('method', 'file:method'); a frame of this package also as
    'orthrus:method' (SGLang has functions of the same names: both graph runners' and the eager runner's
    ``execute``)."""
    name = frame.split(" (")[0].rsplit(".", 1)[-1]
    names = [name]
    if " (" in frame:
        stem = frame.rsplit(" (", 1)[1].split(":")[0].rsplit("/", 1)[-1].removesuffix(".py")
        names.append(f"{stem}:{name}")
    if "orthrus_sglang/" in frame:
        names.append(f"orthrus:{name}")
    return tuple(names)


def scheduler_counts(lines) -> dict[int, tuple[int, Counter]]:
    """Per scheduler process id, in start order (ascending pid): (samples in its event loop, samples per
    frame name, counted once per stack)."""
    by_pid: dict[int, Counter] = {}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        names = {name for f in frames for name in frame_names(f)}
        if names.isdisjoint(EVENT_LOOP):
            continue
        processes = [f for f in frames if f.startswith("process ")]  # py-spy -s: "process PID:cmdline" per level
        pid = int(processes[-1].split()[1].split(":")[0]) if processes else 0
        by_pid.setdefault(pid, Counter()).update(dict.fromkeys(names, int(count)))
    # Every counted stack runs through exactly one event loop frame: their samples are the process's total.
    return {pid: (sum(per_frame[name] for name in EVENT_LOOP), per_frame) for pid, per_frame in sorted(by_pid.items())}


def phase_table(total: int, per_frame: Counter, rate: float, steps: int | None) -> list[str]:
    head = "| phase | samples | share | seconds |" + (" ms per step |" if steps else "")
    rows = [head, "|---|---|---|---|" + ("---|" if steps else "")]
    for label, names in PHASES:
        n = max(per_frame[name] for name in names)
        row = f"| {label} | {n} | {n / total:.1%} | {n / rate:.2f} |"
        if steps:
            row += f" {n / rate / steps * 1e3:.3f} |"
        rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="py-spy's --format raw output")
    ap.add_argument("--rate", type=float, default=200.0, help="py-spy's --rate (samples per second)")
    ap.add_argument("--steps", type=int, default=None, help="decode steps in the run: adds ms per step")
    ap.add_argument("--top", type=int, default=20, help="frames listed by inclusive share (below the loop's trunk)")
    args = ap.parse_args(argv)
    with Path(args.profile).open(encoding="utf-8", errors="replace") as f:
        schedulers = scheduler_counts(f)
    if not schedulers:
        raise SystemExit(f"{args.profile}: no samples in an SGLang scheduler event loop (was it py-spy -s of a bench run?)")
    for i, (pid, (total, per_frame)) in enumerate(schedulers.items(), 1):
        print(f"## scheduler {i} of {len(schedulers)} (pid {pid}): {total} samples ({total / args.rate:.2f} s at "
              f"{args.rate:g} Hz)\n")
        print("\n".join(phase_table(total, per_frame, args.rate, args.steps)))
        print("\n| frame (inclusive) | share |\n|---|---|")
        below_trunk = [(name, n) for name, n in per_frame.most_common() if n < 0.99 * total and ":" not in name]
        for name, n in below_trunk[: args.top]:
            print(f"| {name} | {n / total:.1%} |")
        print()


if __name__ == "__main__":
    main()
