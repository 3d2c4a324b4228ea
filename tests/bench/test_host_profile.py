"""bench.host_profile: the scheduler's host time per step phase, from py-spy's raw format."""

from __future__ import annotations

import pytest

from bench.host_profile import main, phase_table, scheduler_counts

LOOP = ('process 1:"python -m bench.throughput";process 2:"spawn_main";run_scheduler_process (sglang/srt/managers/'
        'scheduler.py:4947);Scheduler.event_loop_overlap (sglang/srt/managers/scheduler.py:1773)')
WORKER = "OrthrusWorker.{} (orthrus_sglang/sgl/worker.py:{})"
PROFILE = [
    # start-up (no event loop): left out
    'process 1:"python";process 2:"spawn_main";ModelRunner.init_cuda_graphs (sglang/model_runner.py:1) 50',
    f"{LOOP};Scheduler.run_batch (scheduler.py:3594);{WORKER.format('forward_batch_generation', 140)};"
    f"ModelRunner._forward_raw (sglang/model_runner.py:1614) 60",
    f"{LOOP};Scheduler.run_batch (scheduler.py:3594);{WORKER.format('forward_batch_generation', 140)};"
    f"{WORKER.format('prepare_block', 238)} 10",
    f"{LOOP};Scheduler.run_batch (scheduler.py:3594);{WORKER.format('accept', 290)} 5",
    # SGLang's own function named accept (not ORTHRUS's acceptance)
    f"{LOOP};Scheduler.recv_requests (scheduler.py:900);Socket.accept (zmq/sugar/socket.py:10) 5",
    f"{LOOP};Scheduler.process_batch_result (scheduler.py:3822);{WORKER.format('on_verify_complete_cpu', 120)} 20",
    # the forward: a replayed graph, and an eager prefill (both runners' method is called execute)
    f"{LOOP};Scheduler.run_batch (scheduler.py:3594);ModelRunner._forward_raw (sglang/model_runner.py:1614);"
    "DecodeCudaGraphRunner.execute (sglang/srt/model_executor/runner/decode_cuda_graph_runner.py:1210) 7",
    f"{LOOP};Scheduler.run_batch (scheduler.py:3594);{WORKER.format('_prefill', 160)};"
    "ModelRunner._forward_raw (sglang/model_runner.py:1614);"
    "EagerRunner.execute (sglang/srt/model_executor/runner/eager_runner.py:88) 3",
    "malformed line without a count",
]


# A second engine's scheduler (bench.throughput's next mode), started later: a larger pid.
LOOP2 = LOOP.replace("process 2:", "process 7:")
SECOND = [f"{LOOP2};Scheduler.run_batch (scheduler.py:3594);ModelRunner._forward_raw (sglang/model_runner.py:1614) 30"]


def test_counts_only_the_event_loop_and_each_frame_once_per_stack():
    [(pid, (total, per_frame))] = scheduler_counts(PROFILE).items()
    assert pid == 2
    assert total == 110
    assert per_frame["run_batch"] == 85
    assert per_frame["orthrus:forward_batch_generation"] == 70
    assert per_frame["orthrus:accept"] == 5  # SGLang's Socket.accept is not ORTHRUS's
    assert per_frame["accept"] == 10
    assert per_frame["init_cuda_graphs"] == 0
    # same-named methods told apart by their file: the graph runner's and the eager runner's execute
    assert per_frame["execute"] == 10
    assert per_frame["decode_cuda_graph_runner:execute"] == 7 and per_frame["eager_runner:execute"] == 3
    assert per_frame["orthrus:_prefill"] == 3


def test_one_table_per_scheduler_in_start_order():
    schedulers = scheduler_counts(SECOND + PROFILE)
    assert list(schedulers) == [2, 7]
    assert schedulers[7][0] == 30 and schedulers[7][1]["_forward_raw"] == 30
    assert schedulers[2][0] == 110


def test_phase_table_gives_shares_seconds_and_ms_per_step():
    total, per_frame = scheduler_counts(PROFILE)[2]
    rows = {r.split(" | ")[0].strip("| ").strip(): r for r in phase_table(total, per_frame, rate=100.0, steps=10)}
    assert rows["model forward (SGLang ModelRunner)"] == "|   model forward (SGLang ModelRunner) | 70 | 63.6% | 0.70 | 70.000 |"
    assert rows["in a CUDA graph (load + replay)"].endswith("| 7 | 6.4% | 0.07 | 7.000 |")
    assert rows["eager (prefill, or no graph for the batch)"].endswith("| 3 | 2.7% | 0.03 | 3.000 |")
    assert rows["ORTHRUS: prefill (the target's extend)"].endswith("| 3 | 2.7% | 0.03 | 3.000 |")
    assert rows["ORTHRUS: accept"].endswith("| 5 | 4.5% | 0.05 | 5.000 |")
    assert rows["ORTHRUS: per-step statistics"].endswith("| 20 | 18.2% | 0.20 | 20.000 |")


def test_cli_prints_the_table_and_refuses_a_profile_without_a_scheduler(tmp_path, capsys):
    path = tmp_path / "prof.txt"
    path.write_text("\n".join(PROFILE + SECOND) + "\n")
    main([str(path), "--rate", "100", "--steps", "10", "--top", "3"])
    out = capsys.readouterr().out
    assert "## scheduler 1 of 2 (pid 2): 110 samples (1.10 s at 100 Hz)" in out
    assert "## scheduler 2 of 2 (pid 7): 30 samples" in out
    assert "| run the batch | 85 | 77.3% | 0.85 | 85.000 |" in out
    empty = tmp_path / "empty.txt"
    empty.write_text(PROFILE[0] + "\n")
    with pytest.raises(SystemExit, match="no samples in an SGLang scheduler event loop"):
        main([str(empty)])
