"""AR vs ORTHRUS (vs DFLASH) throughput, one backend, one run: every mode sees the same prompts.

    python -m bench.throughput                                   # embedded engine, tiny random model, CPU
    python -m bench.throughput --backend sglang --shape qwen3-8b --modes ar,orthrus,dflash \\
        --block-sizes 32 --simulate-tau 9.6 --concurrency 1,8,32 --contexts 1024,4096,16384,32768
    python -m bench.throughput --backend sglang --modes ar,orthrus,orthrus-sd --block-sizes 16 \\
        --simulate-tau 9.6 --temperature 0,0.7 --top-p 0.95 --top-k 20 --contexts ""   # sampling cost

For each mode (AR first) the backend opens a session (an engine or a server), warms it up,
then runs: the concurrency sweep (synthetic prompts, closed loop, --requests per level), the
context sweep (concurrency 1, --contexts prompt tokens), and --datasets (acceptance on real
prompts), each at every --temperature (default greedy). EOS ignored, exactly --out-len tokens per
request. Writes results.json (every raw figure), results.md (also printed) and PNG plots to --out-dir.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from orthrus_sglang.draft_weights import KINDS as DRAFT_KINDS

from .backends import BACKENDS, get_backend
from .cells import WARMUP_OUT_LEN, Cell, cells_of, plan_cells, requests_at
from .prompts import DATASETS
from .engine_metrics import steps_between
from .record import ORTHRUS_MODES, Mode, RunResult, summarize
from .shapes import SHAPES

# orthrus-<kind>: ORTHRUS_DRAFT_WEIGHTS=<kind> (auto, fp8, int4, int4-g64, int4-g32)
LOW_PRECISION = tuple(kind for kind in DRAFT_KINDS if kind != "bf16")
# orthrus-adaptive: each step picks its block size from 1, 2, 4, .. B (ORTHRUS_BLOCK_POLICY=adaptive)
# orthrus-ar-steps: every step B=1 through the ORTHRUS worker (ORTHRUS_BLOCK_SIZES=1): adaptive's floor vs AR
# orthrus-ag / orthrus-sd-ag / orthrus-adaptive-ag: sampled acceptance replayed from CUDA graphs (ORTHRUS_ACCEPT_GRAPHS=1);
# a mode that differs from another in the run only by its sampled acceptance (-sd, -ag) skips the greedy cells
MODES = ("ar", *ORTHRUS_MODES, *(f"orthrus-{kind}" for kind in LOW_PRECISION), "dflash")
DEFAULT_CONTEXTS = {"sglang": [1024, 4096, 16384, 32768], "embedded": []}  # a 32k CPU prefill takes forever
DEFAULT_SHAPE = {"sglang": "qwen3-8b", "embedded": None}  # embedded: None = the tiny random model
BENCH_DIR = Path(__file__).resolve().parent


class UsageError(Exception):
    """A bad flag: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _list(kind):
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__} values, got {text!r}") from None
    parse.__name__ = f"{kind.__name__} list"
    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m bench.throughput", description=__doc__,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ints, floats, strs = _list(int), _list(float), _list(str)
    ap.add_argument("--backend", default="embedded", choices=BACKENDS)
    ap.add_argument("--model", default=None, help="an Orthrus checkpoint dir or id (embedded: also "
                    "smollm2-135m-instruct); default: random weights of --shape")
    ap.add_argument("--shape", default=None, help=f"dummy-weight shape for sglang: {', '.join(SHAPES)} (default qwen3-8b); the "
                    "embedded default is a tiny random Qwen3")
    ap.add_argument("--modes", type=strs, default=["ar", "orthrus"], help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--block-sizes", type=ints, default=[32], help="ORTHRUS block sizes, one mode each")
    ap.add_argument("--low-precision-block-sizes", "--fp8-block-sizes", dest="fp8_block_sizes", type=ints, metavar="SIZES",
                    default=None, help="block sizes of the orthrus-auto, orthrus-fp8 and orthrus-int4(-gN) modes "
                    "(low-precision draft weights); default: --block-sizes")
    ap.add_argument("--temperature", type=floats, default=[0.0], help="comma list: every cell runs at each "
                    "temperature, on the same engine (0: greedy); sampled requests are seeded 0..n-1 per cell")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=-1, help="-1: off")
    ap.add_argument("--simulate-tau", type=floats, default=[], help="pin ORTHRUS acceptance at these taus "
                    "(SGLANG_SIMULATE_ACC_LEN; not lossless); default: the model's own")
    ap.add_argument("--simulate-accept-rate", type=floats, default=[], help="ORTHRUS modes at these per-draft "
                    "acceptance rates r (ORTHRUS_SIMULATE_ACCEPT_RATE: geometric, tau = (1 - r^B) / (1 - r); not "
                    "lossless), beside --simulate-tau's")
    ap.add_argument("--dflash-tau", type=floats, default=[6.49, 9.6], help="DFLASH pinned taus (empty: unpinned)")
    ap.add_argument("--dflash-block-size", type=int, default=16)
    ap.add_argument("--concurrency", type=ints, default=[1, 4, 8, 16, 32, 64])
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--out-len", type=int, default=512)
    ap.add_argument("--requests", default=None, help="requests per concurrency level: a number, or Kx for K times "
                    "the level (at least 2); default max(c, 2); the context sweep runs 2 per length")
    ap.add_argument("--repeats", type=int, default=1, help="run every concurrency cell this many times on the same "
                    "engine, each with fresh prompts: the row is the median run, its spread (min-max total tok/s) "
                    "the noise of the cell")
    ap.add_argument("--contexts", type=ints, default=None, help="context sweep prompt lengths at concurrency 1 "
                    "(empty: skip; default sglang 1024,4096,16384,32768, embedded none)")
    ap.add_argument("--context-out-len", type=int, default=256)
    ap.add_argument("--memory-context", type=int, default=8192, help="context of the memory table's admission column")
    ap.add_argument("--datasets", type=strs, default=[], help=f"acceptance per dataset ({', '.join(DATASETS)})")
    ap.add_argument("--dataset-path", type=strs, default=[], help="local jsonl per dataset (same order), "
                    "or one directory holding NAME.jsonl")
    ap.add_argument("--dataset-requests", type=int, default=32, help="prompts per dataset")
    ap.add_argument("--dataset-concurrency", type=int, default=8)
    ap.add_argument("--out-dir", default=None, help="default bench/results/<UTC timestamp>")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="embedded: cpu (default) or cuda")
    ap.add_argument("--dtype", default=None, help="embedded: fp32 (default), bf16, fp16")
    ap.add_argument("--attention-backend", type=strs, default=["flashinfer"],
                    help="sglang on a GPU: comma list; every mode runs at each, and every speedup is against the "
                         "fastest AR of its cell (flashinfer: AR's is 3x triton's at a 32K prompt, DFLASH's 1.4x at "
                         "concurrency 32, H100); the CPU engine always runs torch_native")
    ap.add_argument("--mem-fraction", type=float, default=0.8, help="sglang mem_fraction_static")
    ap.add_argument("--enable-metrics", action=argparse.BooleanOptionalAction, default=True,
                    help="sglang: every engine with --enable-metrics, as the README's serve command (the series' "
                         "host work is part of a step); the block sizes an adaptive ORTHRUS ran are read from them")
    ap.add_argument("--log-level", default="error", help="sglang")
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.modes = list(dict.fromkeys(m.lower() for m in args.modes))
    args.temperature = list(dict.fromkeys(args.temperature))
    if args.contexts is None:
        args.contexts = DEFAULT_CONTEXTS[args.backend]
    if args.shape is None:
        args.shape = DEFAULT_SHAPE[args.backend]
    problems = _check(args)
    if problems:
        raise UsageError("; ".join(problems))
    return args


def _check(args) -> list[str]:
    p = []
    unknown = [m for m in args.modes if m not in MODES]
    if not args.modes or unknown:
        p.append(f"--modes must list some of {', '.join(MODES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if not args.temperature or not all(0 <= t <= 100 for t in args.temperature) or not 0 < args.top_p <= 1 \
            or args.top_k == 0 or args.top_k < -1:
        p.append("--temperature must be in [0, 100], --top-p in (0, 1], --top-k -1 (off) or >= 1")
    if any(m.startswith("orthrus") for m in args.modes):
        if not args.block_sizes or min(args.block_sizes + (args.fp8_block_sizes or [])) < 2:
            p.append("--block-sizes must list block sizes >= 2")
        elif args.simulate_tau and not (1 <= min(args.simulate_tau) and max(args.simulate_tau) <= min(args.block_sizes)):
            p.append("--simulate-tau values must be in [1, smallest block size]")
        if args.simulate_accept_rate and not all(0 < r < 1 for r in args.simulate_accept_rate):
            p.append("--simulate-accept-rate values must be in (0, 1)")
    if "dflash" in args.modes:
        if args.dflash_block_size < 2:
            p.append("--dflash-block-size must be >= 2")
        elif args.dflash_tau and not (1 <= min(args.dflash_tau) and max(args.dflash_tau) <= args.dflash_block_size):
            p.append("--dflash-tau values must be in [1, --dflash-block-size]")
    if not args.concurrency or min(args.concurrency) < 1:
        p.append("--concurrency must list levels >= 1")
    if args.repeats < 1:
        p.append("--repeats must be >= 1")
    if args.requests is not None:
        try:
            fixed = requests_at(args.requests, 1)  # Kx: at least 2 per level
        except ValueError:
            p.append(f"--requests {args.requests!r}: expected a number or Kx (K times the concurrency)")
        else:
            if fixed < 1:
                p.append("--requests must be >= 1")
            elif args.concurrency and fixed < max(args.concurrency) and not args.requests.lower().endswith("x"):
                p.append(f"--requests ({args.requests}) must be >= the largest concurrency ({max(args.concurrency)})")
    for name in ("prompt_len", "out_len", "context_out_len", "memory_context", "dataset_requests", "dataset_concurrency"):
        if getattr(args, name) < 1:
            p.append(f"--{name.replace('_', '-')} must be >= 1")
    if args.backend == "sglang" and not args.model and args.shape not in SHAPES:
        p.append(f"--shape {args.shape!r} is not a known shape ({', '.join(SHAPES)})")
    if args.contexts and min(args.contexts) < 1:
        p.append("--contexts must be >= 1")
    if not args.attention_backend:
        p.append("--attention-backend must name at least one backend")
    elif len(args.attention_backend) > 1 and (args.backend != "sglang" or args.device == "cpu"):
        p.append("--attention-backend lists several backends: only the sglang backend on a GPU has a choice")
    if not 0 < args.mem_fraction <= 1:
        p.append("--mem-fraction must be in (0, 1]")
    if args.dataset_path and len(args.dataset_path) != len(args.datasets) and not (
            len(args.dataset_path) == 1 and Path(args.dataset_path[0]).is_dir()):
        p.append("--dataset-path needs one file per --datasets entry, or one directory")
    if not args.dataset_path and any(d not in DATASETS for d in args.datasets):
        p.append(f"--datasets: known names are {', '.join(DATASETS)} (others need --dataset-path)")
    return p


def build_modes(args) -> list[Mode]:
    """AR first: every other mode's speedup and output check refer to it; then ORTHRUS's in --modes order,
    DFLASH last. With several attention backends, each mode runs at each (the AR modes first)."""
    backends = args.attention_backend if len(args.attention_backend) > 1 else [None]
    modes = [Mode("AR", attention_backend=a) for a in backends] if "ar" in args.modes else []
    orthrus = {**ORTHRUS_MODES, **{f"orthrus-{kind}": {"draft_weights": kind} for kind in LOW_PRECISION}}
    for name in dict.fromkeys(args.modes):  # ORTHRUS modes in the order --modes lists them
        if name in orthrus:
            fields = orthrus[name]
            sizes = args.block_sizes if "draft_weights" not in fields else (args.fp8_block_sizes or args.block_sizes)
            if fields.get("block_policy") == "adaptive":  # one engine per largest size: it chooses every smaller one
                sizes = [max(args.block_sizes)]
            simulated = [(tau, None) for tau in args.simulate_tau] + [(None, r) for r in args.simulate_accept_rate]
            modes += [Mode("ORTHRUS", b, tau, accept_rate=rate, attention_backend=a, **fields)
                      for b in sizes for tau, rate in (simulated or [(None, None)]) for a in backends]
    if "dflash" in args.modes:
        modes += [Mode("DFLASH", args.dflash_block_size, tau, attention_backend=a)
                  for tau in (args.dflash_tau or [None]) for a in backends]
    return modes


@dataclass
class Collected:
    """What has been measured so far: kept whole if a later mode fails, for a partial results.json."""

    runs: list[RunResult] = field(default_factory=list)
    outputs: list[list[list[int]]] = field(default_factory=list)  # per run, per request
    memory: dict[str, dict] = field(default_factory=dict)


def median_run(runs: list[RunResult]) -> RunResult:
    """One run: itself. Several (--repeats): the median by total tok/s (the lower of the middle two), with
    every run's total tok/s in repeat_tok_s."""
    if len(runs) == 1:
        return runs[0]
    row = sorted(runs, key=lambda r: r.total_tok_s)[(len(runs) - 1) // 2]
    row.repeat_tok_s = [r.total_tok_s for r in runs]
    return row


def run_mode(backend, mode: Mode, warmups: list[Cell], cells: list[Cell], args, got: Collected, bar) -> None:
    bar.set_description(f"{mode.label}: starting")
    session = backend.open(mode)
    try:
        bar.set_description(f"{mode.label}: warm-up")
        for warmup in warmups:  # each temperature and batch size once: first uses compile and capture
            session.generate(warmup.prompts, warmup.out_len, warmup.concurrency, warmup.temperature)
        bar.update()
        for cell in cells:
            bar.set_description(f"{mode.label}: {cell.label}")
            if cell.warmup:  # distinct prompts: the timed ones must not hit the prefix cache
                session.generate(cell.warmup, WARMUP_OUT_LEN, 1, cell.temperature)
            repeats = []
            for prompts in [cell.prompts, *cell.repeat_prompts]:
                blocks = session.block_sizes()
                start = time.perf_counter()
                timings = session.generate(prompts, cell.out_len, cell.concurrency, cell.temperature)
                wall = time.perf_counter() - start
                run = summarize(mode, cell.dataset, cell.concurrency, timings, wall, sweep=cell.sweep,
                                temperature=cell.temperature)
                run.steps_by_block_size = steps_between(blocks, session.block_sizes())
                repeats.append((run, timings))
            row = median_run([r for r, _ in repeats])
            got.runs.append(row)
            got.outputs.append([t.output_ids for t in repeats[0][1]])  # the prompts every mode shares first
            bar.update()
        got.memory[mode.label] = memory_row(session.memory(), mode, args)
    finally:
        session.close()


def memory_row(mem: dict, mode: Mode, args) -> dict:
    """The backend's figures plus how many requests of --memory-context tokens its pool admits."""
    pool, cap = mem.get("kv_pool_tokens"), mem.get("max_running_requests")
    need = args.memory_context + args.out_len + (mode.block_size or 0)  # a verify block may run B past the end
    admitted = None
    if pool is not None and cap is not None:
        slot = mem.get("kv_slot_tokens")  # backends with fixed per-request rows
        admitted = 0 if slot is not None and need > slot else min(cap, pool // need)
    return {**mem, "admitted_at_context": admitted}


def compare_with_ar(got: Collected) -> None:
    """speedup_vs_ar and outputs_equal_ar, against the AR run of the same cell; where AR ran at several
    attention backends, against the fastest of them (the baseline a user would pick for that cell)."""
    def key(r: RunResult):
        return r.sweep, r.dataset, r.concurrency, r.prompt_len, r.temperature

    ar: dict = {}
    for r, out in zip(got.runs, got.outputs):
        if r.algorithm == "AR" and (key(r) not in ar or r.total_tok_s > ar[key(r)][0].total_tok_s):
            ar[key(r)] = (r, out)
    for r, out in zip(got.runs, got.outputs):
        if key(r) not in ar:
            continue
        ref, ref_out = ar[key(r)]
        r.ar_reference = ref.mode
        r.speedup_vs_ar = r.total_tok_s / ref.total_tok_s
        if r.algorithm != "AR" and r.lossless and r.temperature == 0:  # sampled outputs: a distribution, not tokens
            r.outputs_equal_ar = out == ref_out


def git_commit() -> str | None:
    """HEAD, with "-dirty" when tracked files differ from it: a copy of a working tree (the GPU host's)
    may carry an older .git than its files, and its commit alone would name code that did not run."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=BENCH_DIR,
                              capture_output=True, text=True, timeout=10, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_results(args, env: dict, got: Collected, error: str | None = None, trace: str | None = None) -> dict:
    results = {
        "env": env, "args": vars(args), "runs": [asdict(r) for r in got.runs],
        "memory": {"context": args.memory_context, "out_len": args.out_len,
                   "formula": "admitted_at_context = min(max_running_requests, kv_pool_tokens // "
                              "(context + out_len + B)): derived from the pool size, not measured",
                   "modes": got.memory},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit(),
    }
    if error:
        results.update(error=error, traceback=trace)
    return results


def write_outputs(out_dir: Path, results: dict, plots: bool) -> str:
    from .report import render

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    images = []
    if plots:
        from .plots import make_plots

        images = [p.name for p in make_plots(results, out_dir)]
    markdown = render(results, images=images)
    (out_dir / "results.md").write_text(markdown)
    return markdown


def _describe(backend) -> dict:
    try:
        return backend.describe()
    except Exception as exc:  # noqa: BLE001 - a broken describe must not lose the measurements
        return {"describe_error": f"{type(exc).__name__}: {exc}"}


def _fail(message: str, code: int) -> int:
    print(f"bench.throughput: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), 2)
    out_dir = Path(args.out_dir or BENCH_DIR / "results" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    args.out_dir = str(out_dir)
    modes = build_modes(args)
    try:  # configuration problems surface here, before anything runs
        backend = get_backend(args.backend, args)
        vocab_size = backend.describe().get("model", {}).get("vocab_size")
        if not vocab_size:
            raise ValueError(f"the {args.backend} backend's describe() gives no model.vocab_size")
        warmups, cells = plan_cells(args, vocab_size, getattr(backend, "tokenizer", None))
    except (ValueError, ImportError, OSError) as exc:
        return _fail(str(exc), 2)

    from tqdm import tqdm

    got, error, trace, code = Collected(), None, None, 0
    try:
        planned = {mode: cells_of(mode, modes, cells) for mode in modes}
        with tqdm(total=sum(1 + len(c) for c in planned.values()), unit="cell", file=sys.stderr,
                  dynamic_ncols=True) as bar:
            for mode in modes:
                run_mode(backend, mode, warmups, planned[mode], args, got, bar)
    except KeyboardInterrupt:
        error, code = "interrupted", 130
    except Exception as exc:  # noqa: BLE001 - reported in one line; the traceback goes to results.json
        error, trace, code = f"{type(exc).__name__}: {exc}", traceback.format_exc(), 1
    finally:
        env = _describe(backend)  # after the runs: a server backend may know more by now
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    compare_with_ar(got)
    if error and not got.runs:
        return _fail(error, code)
    markdown = write_outputs(out_dir, build_results(args, env, got, error, trace), plots=not args.no_plots)
    print(markdown)
    print(f"results: {out_dir}", file=sys.stderr)
    return _fail(f"{error} (partial results in {out_dir})", code) if error else 0


if __name__ == "__main__":
    sys.exit(main())
