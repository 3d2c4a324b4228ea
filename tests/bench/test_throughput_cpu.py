"""python -m bench.throughput on the embedded engine (tiny random model, CPU), and its parts.

Never asserts a speed: only that every figure is there, finite and consistent, and that
ORTHRUS's greedy outputs are AR's.
"""

import json
from dataclasses import asdict
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# bench/ is not an installed package: import it from the repo root whatever the pytest invocation.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import throughput  # noqa: E402
from bench.plots import make_plots  # noqa: E402
from bench.prompts import DatasetError, load_prompts, synthetic  # noqa: E402
from bench.record import Mode, RequestTiming, summarize  # noqa: E402
from bench.report import main as report_main  # noqa: E402
from bench.report import render  # noqa: E402
from orthrus_sglang.prompting import encode_prompt  # noqa: E402
from orthrus_sglang.testing import write_byte_tokenizer  # noqa: E402

torch.set_num_threads(1)

PLOTS = ["throughput_vs_concurrency.png", "speedup_vs_tau.png", "acceptance_by_position.png",
         "throughput_vs_context.png"]
QUESTIONS = ["What is 2 + 3?", "Name a prime number."]


def _numbers(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_end_to_end_embedded(tmp_path, capsys):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    out = tmp_path / "out"
    rc = throughput.main(["--backend", "embedded", "--modes", "ar,orthrus", "--block-sizes", "2,4",
                          "--concurrency", "1,2", "--prompt-len", "8", "--out-len", "12", "--contexts", "16,32",
                          "--context-out-len", "12", "--datasets", "gsm8k", "--dataset-path", str(data),
                          "--out-dir", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]

    cells = {("concurrency", "synthetic", 1, 8), ("concurrency", "synthetic", 2, 8), ("context", "synthetic", 1, 16),
             ("context", "synthetic", 1, 32)}
    by_mode = {}
    for r in runs:
        by_mode.setdefault(r["mode"], set()).add((r["sweep"], r["dataset"], r["concurrency"], r["prompt_len"]))
    assert sorted(by_mode) == ["AR", "ORTHRUS B=2", "ORTHRUS B=4"]
    for mode_cells in by_mode.values():
        assert len(mode_cells) == 5 and cells < mode_cells  # 4 synthetic cells + the dataset
    assert len(runs) == 15

    for r in runs:
        for name, value in r.items():
            assert all(math.isfinite(x) for x in _numbers(value)), (name, value)
        assert r["out_len"] == 12 and r["num_requests"] == 2 and r["tau"] >= 1
        assert sum(r["accept_histogram"]) == r["verify_steps"]
        assert r["wall_s"] > 0 and r["total_tok_s"] > 0 and r["ttft_ms"] > 0 and r["tpot_ms"] > 0
        assert r["speedup_vs_ar"] is not None
        if r["algorithm"] == "AR":
            assert r["verify_steps"] == 0 and r["tau"] == 1.0 and r["speedup_vs_ar"] == 1.0
        else:
            assert r["outputs_equal_ar"] is True, r  # greedy Orthrus is lossless
            assert r["lossless"] and r["pinned_tau"] is None
            assert len(r["accept_histogram"]) == r["block_size"]
            # Each request's first token comes from the prefill; its steps give the 11 others (the last may overshoot).
            tokens_from_steps = sum((n + 1) * c for n, c in enumerate(r["accept_histogram"]))
            assert r["verify_steps"] <= 2 * 11 <= tokens_from_steps
            assert len(r["accepted_per_position"]) == r["block_size"] - 1
    dataset_rows = [r for r in runs if r["sweep"] == "dataset"]
    assert {r["dataset"] for r in dataset_rows} == {"gsm8k"} and all(r["prompt_len"] > 10 for r in dataset_rows)

    memory = results["memory"]["modes"]
    assert sorted(memory) == sorted(by_mode)
    for m in memory.values():
        assert m["max_running_requests"] == 2 and m["kv_pool_tokens"] > 0 and m["admitted_at_context"] == 0
    assert results["env"]["model"]["vocab_size"] == 260 and results["args"]["block_sizes"] == [2, 4]
    assert "created" in results and "error" not in results

    for name in PLOTS:
        assert (out / name).stat().st_size > 0
    markdown = (out / "results.md").read_text()
    assert "| mode | B | tau | concurrency |" in markdown and "## Context length" in markdown
    assert "## Datasets" in markdown and "## Memory" in markdown and "## Acceptance by draft position" in markdown
    # 4 synthetic cells + the dataset in the throughput tables, and the 4 synthetic cells' step costs
    assert markdown.count("| ORTHRUS | 4 |") == 9 and "## Step cost and efficiency" in markdown
    assert markdown in capsys.readouterr().out


def test_temperatures_side_by_side_on_one_engine(tmp_path, capsys):
    """--temperature 0,0.9: every cell at both temperatures on the same engine; each row compares with
    AR at its own temperature, and only greedy rows compare tokens."""
    out = tmp_path / "out"
    rc = throughput.main(["--modes", "ar,orthrus", "--block-sizes", "4", "--concurrency", "2", "--prompt-len", "8",
                          "--out-len", "10", "--temperature", "0,0.9", "--top-k", "20", "--top-p", "0.95",
                          "--out-dir", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert sorted((r["algorithm"], r["temperature"]) for r in runs) == [
        ("AR", 0.0), ("AR", 0.9), ("ORTHRUS", 0.0), ("ORTHRUS", 0.9)]
    ar = {r["temperature"]: r for r in runs if r["algorithm"] == "AR"}
    for r in runs:
        assert r["speedup_vs_ar"] == pytest.approx(r["total_tok_s"] / ar[r["temperature"]]["total_tok_s"])
        assert r["out_len"] == 10 and r["num_requests"] == 2
    orthrus = {r["temperature"]: r for r in runs if r["algorithm"] == "ORTHRUS"}
    assert orthrus[0.0]["outputs_equal_ar"] is True  # greedy: the tokens are AR's
    assert orthrus[0.9]["outputs_equal_ar"] is None  # sampled: a distribution, not compared token-wise
    assert all(r["verify_steps"] > 0 for r in orthrus.values())

    md = (out / "results.md").read_text()
    assert "Temperature 0, 0.9 (0: greedy, top_p 0.95, top_k 20;" in md and "Greedy" not in md
    assert "| mode | B | tau | T | concurrency |" in md
    assert "| ORTHRUS B=4, T=0.9 | synthetic |" in md and "| ORTHRUS B=4 | synthetic |" in md  # acceptance rows
    assert md in capsys.readouterr().out
    for name in ("throughput_vs_concurrency.png", "speedup_vs_tau.png", "acceptance_by_position.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("flags, message", [
    (["--modes", "ar,foo"], "unknown: foo"),
    (["--modes", ""], "--modes"),
    (["--block-sizes", "1"], "--block-sizes"),
    (["--block-sizes", "x"], "comma list of int"),
    (["--concurrency", ""], "--concurrency"),
    (["--requests", "1", "--concurrency", "1,4"], "--requests"),
    (["--out-len", "0"], "--out-len"),
    (["--simulate-tau", "5", "--block-sizes", "4"], "--simulate-tau"),
    (["--datasets", "nosuch"], "--datasets"),
    (["--backend", "nope"], "invalid choice"),
    (["--modes", "ar,dflash"], "no DFLASH"),  # the embedded backend refuses before loading anything
    (["--simulate-tau", "2", "--block-sizes", "4"], "cannot pin acceptance"),
    (["--simulate-accept-rate", "1.0"], "--simulate-accept-rate"),
    (["--simulate-accept-rate", "0.9", "--block-sizes", "4"], "cannot pin acceptance"),
    (["--temperature", "0,-1"], "--temperature"),
    (["--temperature", ""], "--temperature"),
    (["--backend", "sglang", "--shape", "nosuch"], "not a known shape (qwen3-8b, smollm2-135m)"),
    (["--attention-backend", "triton,flashinfer"], "only the sglang backend on a GPU has a choice"),
    (["--backend", "sglang", "--device", "cpu", "--attention-backend", "triton,flashinfer"], "has a choice"),
    (["--attention-backend", ""], "--attention-backend must name"),
])
def test_bad_flags_exit_with_one_line(tmp_path, capsys, flags, message):
    assert throughput.main(flags + ["--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench.throughput: error:") and "\n" not in err and message in err, err
    assert not (tmp_path / "out").exists()


class _FakeSession:
    def __init__(self, backend, mode):
        self.backend, self.mode = backend, mode

    def generate(self, prompts, out_len, concurrency, temperature=0.0):
        if self.mode.name == "ORTHRUS":
            raise KeyboardInterrupt
        return [RequestTiming(len(p), list(range(out_len)), 0.01, 0.02) for p in prompts]

    def memory(self):
        return {"kv_pool_tokens": 1000, "max_running_requests": 4}

    def block_sizes(self):
        return None

    def close(self):
        self.backend.closed.append(self.mode.label)


class _FakeBackend:
    name = "fake"

    def __init__(self):
        self.closed = []

    def describe(self):
        return {"backend": "fake", "model": {"vocab_size": 300}}

    def open(self, mode):
        return _FakeSession(self, mode)

    def close(self):
        self.closed.append("backend")


def test_interrupt_closes_everything_and_keeps_partial_results(tmp_path, monkeypatch):
    backend = _FakeBackend()
    monkeypatch.setattr(throughput, "get_backend", lambda name, args: backend)
    out = tmp_path / "out"
    rc = throughput.main(["--block-sizes", "4", "--concurrency", "1", "--prompt-len", "4", "--out-len", "3",
                          "--no-plots", "--out-dir", str(out)])
    assert rc == 130
    assert backend.closed == ["AR", "ORTHRUS B=4", "backend"]
    results = json.loads((out / "results.json").read_text())
    assert results["error"] == "interrupted" and [r["mode"] for r in results["runs"]] == ["AR"]
    assert results["memory"]["modes"]["AR"]["admitted_at_context"] == 0  # 1000 // (8192 + 3) requests
    assert not list(out.glob("*.png")) and "Incomplete run" in (out / "results.md").read_text()


def _timings():
    # B = 3. Request 1: prefill token + steps accepting 1 then 2 drafts = 1 + 2 + 3 tokens.
    # Request 2: prefill token + 3 steps accepting nothing = 1 + 3 tokens.
    return [RequestTiming(4, list(range(6)), ttft_s=0.1, e2e_s=0.5, verify_steps=2, accept_histogram=[0, 1, 1],
                          accepted_per_position=[2, 1]),
            RequestTiming(6, list(range(4)), ttft_s=0.2, e2e_s=0.5, verify_steps=3, accept_histogram=[3, 0, 0],
                          accepted_per_position=[0, 0])]


def test_summarize_arithmetic():
    r = summarize(Mode("ORTHRUS", 3), "synthetic", 2, _timings(), wall_s=1.0)
    assert r.mode == "ORTHRUS B=3" and r.lossless and r.sweep == "concurrency"
    assert r.accept_histogram == [3, 1, 1] and r.verify_steps == 5 and r.accepted_per_position == [2, 1]
    assert r.tau == pytest.approx((3 * 1 + 1 * 2 + 1 * 3) / 5)  # 1.6 tokens per verify step
    assert r.tpot_ms == pytest.approx(1e3 * ((0.5 - 0.1) / 5 + (0.5 - 0.2) / 3) / 2)  # 90 ms
    assert r.ttft_ms == pytest.approx(150) and r.ttft_p50_ms == pytest.approx(150)
    assert r.total_tok_s == pytest.approx(10) and r.per_request_tok_s == pytest.approx((6 / 0.5 + 4 / 0.5) / 2)
    assert r.prompt_len == 5 and r.out_len == 5 and r.num_requests == 2

    ar = summarize(Mode("AR"), "synthetic", 1, [RequestTiming(4, [1, 2], 0.1, 0.3)], wall_s=0.5, sweep="context")
    assert ar.tau == 1.0 and ar.verify_steps == 0 and ar.tpot_ms == pytest.approx(200) and ar.sweep == "context"
    pinned = summarize(Mode("ORTHRUS", 3, pinned_tau=2.5), "synthetic", 2, _timings(), wall_s=1.0)
    assert not pinned.lossless and pinned.mode == "ORTHRUS B=3 tau pinned 2.5"
    with pytest.raises(ValueError):
        summarize(Mode("AR"), "synthetic", 1, [], wall_s=1.0)


def test_every_mode_at_every_backend_against_the_fastest_ar():
    """--attention-backend a,b: each mode runs at each backend; each cell's speedups and output checks
    refer to the faster AR of that cell (per cell: here triton wins at concurrency 1, flashinfer at 8)."""
    args = throughput.parse_args(["--backend", "sglang", "--modes", "ar,orthrus,dflash", "--block-sizes", "16",
                                  "--attention-backend", "triton,flashinfer"])
    modes = throughput.build_modes(args)
    assert [m.label for m in modes] == ["AR [triton]", "AR [flashinfer]", "ORTHRUS B=16 [triton]",
                                        "ORTHRUS B=16 [flashinfer]", "DFLASH B=16 tau pinned 6.49 [triton]",
                                        "DFLASH B=16 tau pinned 6.49 [flashinfer]", "DFLASH B=16 tau pinned 9.6 [triton]",
                                        "DFLASH B=16 tau pinned 9.6 [flashinfer]"]
    got = throughput.Collected()

    def add(mode, concurrency, wall_s, tokens):
        got.runs.append(summarize(mode, "synthetic", concurrency, [RequestTiming(4, tokens, 0.1, 0.5)], wall_s))
        got.outputs.append([tokens])

    ar_t, ar_f, orthrus_f = modes[0], modes[1], modes[3]
    add(ar_t, 1, 1.0, [1, 2, 3, 4])  # 4 tok/s
    add(ar_f, 1, 2.0, [1, 2, 3, 4])  # 2 tok/s
    add(ar_t, 8, 2.0, [1, 2, 3, 4])  # 2 tok/s
    add(ar_f, 8, 0.5, [1, 2, 3, 9])  # 8 tok/s (bf16 backends may round a near-tie differently)
    add(orthrus_f, 1, 0.5, [1, 2, 3, 4])  # 8 tok/s
    add(orthrus_f, 8, 0.25, [1, 2, 3, 4])  # 16 tok/s
    throughput.compare_with_ar(got)
    c1, c8 = got.runs[4], got.runs[5]
    assert (c1.ar_reference, c1.speedup_vs_ar, c1.outputs_equal_ar) == ("AR [triton]", 2.0, True)
    assert (c8.ar_reference, c8.speedup_vs_ar, c8.outputs_equal_ar) == ("AR [flashinfer]", 2.0, False)
    assert got.runs[1].speedup_vs_ar == 0.5 and got.runs[1].attention_backend == "flashinfer"
    from bench.report import render

    text = render({"env": {}, "args": vars(args), "runs": [asdict(r) for r in got.runs]})
    assert "against the fastest AR of its cell" in text and "| AR [triton] |" in text


def test_synthetic_prompts_are_seeded():
    assert synthetic(1, 6, 1000, 0) == [[650, 10, 900, 4, 643, 346]]  # the same on every machine
    a = synthetic(3, 50, 260, "0/c4", low=100)
    assert a == synthetic(3, 50, 260, "0/c4", low=100) != synthetic(3, 50, 260, "0/c8", low=100)
    assert len(a) == 3 and all(len(p) == 50 and 100 <= min(p) and max(p) < 260 for p in a)
    assert len({tuple(p) for p in a}) == 3
    with pytest.raises(ValueError):
        synthetic(1, 4, 100, 0, low=100)


def test_dataset_loader_local_jsonl(tmp_path):
    tok = write_byte_tokenizer(tmp_path / "tok")
    records = [{"question": "What is 2 + 3?"}, {"problem": "Solve x^2 = 4."},
               {"prompt": ["First turn.", "Second turn."], "category": "writing"},
               {"text": "Write f.", "test_list": ["assert f(1) == 2"]}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    texts = ["What is 2 + 3?", "Solve x^2 = 4.", "First turn.",
             "Write f.\nYour code should pass these tests:\nassert f(1) == 2"]

    prompts = load_prompts("anything", 10, tok, path)
    assert prompts == [encode_prompt(tok, t) for t in texts]
    assert all(p[0] == tok.convert_tokens_to_ids("<|im_start|>") for p in prompts)  # chat-templated
    assert load_prompts("gsm8k", 2, tok, path) == prompts[:2]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"answer": "4"}\n')
    with pytest.raises(DatasetError, match="text fields"):
        load_prompts("gsm8k", 1, tok, bad)
    bad.write_text("not json\n")
    with pytest.raises(DatasetError, match="bad.jsonl:1"):
        load_prompts("gsm8k", 1, tok, bad)
    with pytest.raises(DatasetError, match="no such file"):
        load_prompts("gsm8k", 1, tok, tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_prompts("nosuch", 1, tok)
    with pytest.raises(DatasetError, match="tokenizer"):
        load_prompts("gsm8k", 1, None, path)


def _results():
    ar = summarize(Mode("AR"), "synthetic", 2, [RequestTiming(4, list(range(6)), 0.1, 0.5)] * 2, wall_s=1.0)
    orthrus = summarize(Mode("ORTHRUS", 3), "synthetic", 2, _timings(), wall_s=0.5)
    pinned = summarize(Mode("ORTHRUS", 3, pinned_tau=2.5), "synthetic", 2, _timings(), wall_s=0.4)
    ar.speedup_vs_ar, orthrus.speedup_vs_ar, pinned.speedup_vs_ar = 1.0, 2.0, 2.5
    orthrus.outputs_equal_ar = False
    from dataclasses import asdict
    return {"env": {"backend": "sglang", "hardware": "NVIDIA H100 80GB HBM3", "device": "cuda", "threads": 16,
                    "versions": {"torch": "2.9", "sglang": "0.5.17"}, "dtype": "bf16", "attention_backend": "triton",
                    "model": {"name": "qwen3-8b shape", "hidden_size": 4096, "num_layers": 36, "num_heads": 32,
                              "num_kv_heads": 8, "vocab_size": 151936}},
            "args": {"prompt_len": 4, "out_len": 6}, "runs": [asdict(r) for r in (ar, orthrus, pinned)],
            "memory": {"context": 8192, "modes": {"AR": {"kv_pool_tokens": 100000, "max_running_requests": 64,
                                                         "admitted_at_context": 11}}},
            "created": "2026-01-01T00:00:00+00:00"}


def test_report_rendering(tmp_path, capsys):
    results = _results()
    md = render(results)
    assert "NVIDIA H100 80GB HBM3" in md and "sglang 0.5.17" in md and "hidden 4096" in md and "triton" in md
    assert "16 torch threads" not in md  # threads only matter on CPU
    rows = [line for line in md.splitlines() if line.startswith("| ORTHRUS | 3 |")]
    assert len(rows) == 2
    assert "| 1.60 |" in rows[0] and "2.00x" in rows[0] and "| False |" in rows[0]
    assert "| 1.60* |" in rows[1] and "2.50x" in rows[1] and rows[1].endswith("| – |")
    assert "NOT lossless" in md and "| AR | 100,000 | 64 | 11 |" in md
    assert "## Acceptance by draft position" in md and "## Context length" not in md

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert report_main([str(path)]) == 0
    assert capsys.readouterr().out.strip() == md.strip()


def test_plots_skip_missing_data(tmp_path):
    made = {p.name for p in make_plots(_results(), tmp_path)}
    assert made == {"throughput_vs_concurrency.png", "speedup_vs_tau.png", "acceptance_by_position.png"}
    assert make_plots({"runs": []}, tmp_path / "none") == []


def test_low_precision_modes_take_their_own_block_sizes():
    """orthrus-auto / -fp8 / -int4 run ORTHRUS_DRAFT_WEIGHTS=auto / fp8 / int4 at
    --low-precision-block-sizes (the older --fp8-block-sizes is the same flag)."""
    for flag in ("--low-precision-block-sizes", "--fp8-block-sizes"):
        args = throughput.parse_args(["--backend", "sglang", "--modes", "orthrus,orthrus-auto,orthrus-int4,"
                                      "orthrus-int4-g32", "--block-sizes", "16", flag, "8"])
        modes = throughput.build_modes(args)
        assert [(m.label, m.draft_weights) for m in modes] == [("ORTHRUS B=16", "bf16"), ("ORTHRUS auto B=8", "auto"),
                                                               ("ORTHRUS int4 B=8", "int4"),
                                                               ("ORTHRUS int4-g32 B=8", "int4-g32")]


def test_accept_graph_modes_set_the_switch_and_need_sglang(tmp_path, capsys):
    """orthrus-ag / orthrus-sd-ag: ORTHRUS_ACCEPT_GRAPHS=1 (greedy drafts / drafts from q); the embedded
    engine has no graphs and says so in one line."""
    args = throughput.parse_args(["--backend", "sglang", "--modes",
                                  "orthrus,orthrus-ag,orthrus-sd-ag,orthrus-adaptive-ag", "--block-sizes", "16"])
    assert [(m.label, m.accept_graphs, m.sampled_drafts) for m in throughput.build_modes(args)] == [
        ("ORTHRUS B=16", False, False), ("ORTHRUS accept-graphs B=16", True, False),
        ("ORTHRUS sampled-drafts accept-graphs B=16", True, True),
        ("ORTHRUS adaptive accept-graphs B<=16", True, False)]
    assert throughput.main(["--modes", "ar,orthrus-ag", "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "orthrus-ag and orthrus-sd-ag need --backend sglang" in err, err


def test_adaptive_mode_runs_one_engine_at_the_largest_block_size(tmp_path):
    """orthrus-adaptive: one engine per run at the largest --block-sizes, choosing each step's size itself;
    lossless like every other mode (its outputs are checked against AR)."""
    args = throughput.parse_args(["--backend", "sglang", "--modes", "ar,orthrus,orthrus-adaptive", "--block-sizes",
                                  "8,16"])
    assert [(m.label, m.block_policy) for m in throughput.build_modes(args)] == [
        ("AR", "fixed"), ("ORTHRUS B=8", "fixed"), ("ORTHRUS B=16", "fixed"), ("ORTHRUS adaptive B<=16", "adaptive")]
    out = tmp_path / "out"
    assert throughput.main(["--backend", "embedded", "--modes", "ar,orthrus-adaptive", "--block-sizes", "4",
                            "--concurrency", "2", "--prompt-len", "8", "--out-len", "24", "--contexts", "",
                            "--datasets", "", "--out-dir", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    adaptive = [r for r in runs if r["mode"] == "ORTHRUS adaptive B<=4"]
    assert adaptive and all(r["outputs_equal_ar"] is True and r["lossless"] for r in adaptive)
    # the block sizes its steps took, per run: request-steps add up to the requests' verify steps
    for r in adaptive:
        assert set(r["steps_by_block_size"]) <= {"1", "2", "4"}
        assert sum(r["steps_by_block_size"].values()) == r["verify_steps"]
    assert all(r["steps_by_block_size"] == {} for r in runs if r["algorithm"] == "AR")
    assert "## Block sizes chosen" in (out / "results.md").read_text()


def test_results_name_their_commit_and_say_when_the_tree_differed():
    """git_commit is HEAD, "-dirty" when tracked files differ from it (this checkout decides which);
    the report's header says so rather than name a commit whose code did not run as is."""
    from bench.report import header

    commit = throughput.git_commit()
    clean = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=Path(throughput.__file__).parent).returncode == 0
    assert commit is None or commit.endswith("-dirty") != clean
    assert "commit 0123456789ab + uncommitted changes" in header({"git_commit": "0123456789abcdef" * 2 + "-dirty"})
    assert "commit 0123456789ab." in header({"git_commit": "0123456789abcdef" * 2})


def test_repeats_report_the_median_run_and_the_spread(tmp_path):
    """--repeats 3: each concurrency cell runs three times with fresh prompts; the row is the median run,
    repeat_tok_s holds all three, and the table gains a spread column."""
    out = tmp_path / "out"
    assert throughput.main(["--modes", "ar,orthrus", "--block-sizes", "4", "--concurrency", "1,2", "--prompt-len", "8",
                            "--out-len", "12", "--repeats", "3", "--contexts", "", "--no-plots",
                            "--out-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    runs = [r for r in results["runs"] if r["sweep"] == "concurrency"]
    assert len(runs) == 4  # one row per (mode, concurrency), not per repeat
    for r in runs:
        tok = r["repeat_tok_s"]
        assert len(tok) == 3 and r["total_tok_s"] == sorted(tok)[1]
    orthrus = [r for r in runs if r["algorithm"] == "ORTHRUS"]
    assert all(r["outputs_equal_ar"] is True for r in orthrus)  # first runs share their prompts with AR's
    md = (out / "results.md").read_text()
    assert "| spread |" in md and "Every cell ran 3 times" in md
    args = throughput.parse_args(["--repeats", "2", "--concurrency", "1", "--contexts", ""])
    _, cells = throughput.plan_cells(args, 1000, None)
    assert len(cells[0].repeat_prompts) == 1 and cells[0].repeat_prompts[0] != cells[0].prompts


@pytest.mark.parametrize("flags, message", [(["--requests", "abc"], "expected a number or Kx"),
                                            (["--requests", "0"], "--requests must be >= 1"),
                                            (["--requests", "2", "--concurrency", "4"], "must be >= the largest")])
def test_bad_requests_are_one_line_errors(flags, message, capsys):
    assert throughput.main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_repeats_must_be_positive(capsys):
    assert throughput.main(["--repeats", "0"]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
