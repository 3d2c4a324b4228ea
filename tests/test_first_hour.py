"""The first hour of a new user (issue 22): every verb run as a subprocess on the README quickstart's
install, i.e. without the packages that only the test install adds (matplotlib, from `bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from orthrus_sglang import demo
from orthrus_sglang.cli import build_parser
from orthrus_sglang.testing import write_tiny_plain_llama

REPO = Path(__file__).resolve().parents[1]
PLAIN_MASK_ID = 259  # <|mask|> of the tiny byte tokenizer (orthrus_sglang/testing.py)


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("_", "-") for r in reqs}


def modules_missing_from_quickstart() -> list[str]:
    """Top-level modules of the extras the test install adds to the README quickstart's extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    readme = (REPO / "README.md").read_text()
    line = readme.split("<!-- quickstart-command -->", 1)[1]
    quick = set(re.search(r'pip install "\.\[([\w,]+)\]"', line).group(1).split(","))
    tested = set(re.search(r"orthrus-sglang\[([\w,]+)\]", " ".join(extras["test"])).group(1).split(","))
    have = _requirement_names(project["dependencies"] + [r for e in quick for r in extras[e]])
    missing = _requirement_names([r for e in tested - quick for r in extras[e]]) - have
    return sorted(m for m, dists in importlib.metadata.packages_distributions().items()
                  if missing & {d.lower().replace("_", "-") for d in dists})


@pytest.fixture(scope="module")
def quickstart_env(tmp_path_factory) -> dict:
    """Env of a child Python that cannot import what the quickstart install lacks (as if not installed)."""
    blocked = modules_missing_from_quickstart()
    site = tmp_path_factory.mktemp("quickstart-site")
    (site / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({blocked!r}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHRUS_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), COLUMNS="1000", PYTHONUNBUFFERED="1")
    env["ORTHRUS_CACHE_DIR"] = str(tmp_path_factory.mktemp("demo-cache"))
    return {"env": env, "blocked": blocked}


def orthrus(qs: dict, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orthrus_sglang.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=qs["env"], cwd=REPO)


def test_the_quickstart_env_lacks_the_test_only_packages(quickstart_env):
    for module in quickstart_env["blocked"]:
        out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                             env=quickstart_env["env"])
        assert out.returncode == 1 and "ModuleNotFoundError" in out.stderr, (module, out.stderr)


# ---- train: no crash without matplotlib ----------------------------------------------------------

def test_train_runs_on_the_quickstart_install(quickstart_env, tmp_path):
    from orthrus_sglang.train.plot import NO_MATPLOTLIB

    write_tiny_plain_llama(tmp_path / "plain")
    out_dir = tmp_path / "run"
    t0 = time.perf_counter()
    out = orthrus(quickstart_env, "train", "--model", tmp_path / "plain", "--out", out_dir,
                  "--mask-token-id", PLAIN_MASK_ID, "--block-size", 4, "--num-prompts", 4, "--gen-max-new-tokens", 8,
                  "--num-eval-prompts", 2, "--eval-max-new-tokens", 6, "--row-len", 32, "--rows-per-micro", 2,
                  "--max-steps", 3, "--warmup-steps", 1, "--eval-every", 1, "--no-progress")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    results = json.loads((out_dir / "results.json").read_text())
    assert results["steps"] == 3 and len(results["history"]) > 2  # several evaluations, each a curve redraw
    assert Path(results["model"], "config.json").is_file() and str(results["model"]) in out.stdout
    curve = out_dir / "tau_curve.png"
    if "matplotlib" in quickstart_env["blocked"]:
        note = NO_MATPLOTLIB.format(out_dir / "results.json")
        assert out.stderr.count(note) == 1 and "pip install matplotlib" in note, out.stderr  # said once
        assert not curve.exists() and "curve:" not in out.stdout
    else:
        assert curve.stat().st_size > 0 and f"curve: {curve}" in out.stdout
    print(f"train on the quickstart install: {time.perf_counter() - t0:.1f}s")


# ---- eval: the same model names as the other verbs, and --threads ---------------------------------

@pytest.fixture(scope="module")
def demo_eval(quickstart_env, tmp_path_factory):
    """`orthrus eval --model smollm2-135m-instruct` with an empty model cache: builds the demo, then evaluates."""
    report = tmp_path_factory.mktemp("demo-eval") / "eval.json"
    out = orthrus(quickstart_env, "eval", "--model", demo.DEMO_MODEL_ID, "--num-prompts", 1, "--max-new-tokens", 4,
                  "--threads", 1, "--json", report, timeout=600)
    return out, report


def test_eval_takes_the_demo_model_name(demo_eval, quickstart_env):
    from orthrus_sglang.ref.loader import load_config

    out, report = demo_eval
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    built = demo.demo_checkpoint_dir(quickstart_env["env"]["ORTHRUS_CACHE_DIR"])
    block_size = load_config(built).block_size
    record = json.loads(report.read_text())["results"][0]
    assert record["block_size"] == block_size and record["num_prompts"] == 1 and record["tau"] >= 1
    assert f"[reference] B={block_size}: tau {record['tau']:.3f}" in out.stdout


def test_demo_build_log_names_the_mask_token(demo_eval, quickstart_env):
    from orthrus_sglang.ref.loader import load_config

    out, _ = demo_eval
    config = load_config(demo.demo_checkpoint_dir(quickstart_env["env"]["ORTHRUS_CACHE_DIR"]))
    line = next(x for x in out.stderr.splitlines() if x.startswith("[orthrus demo] converting"))
    assert line == (f"[orthrus demo] converting to Orthrus (block size {config.block_size}, "
                    f"mask token {demo.MASK_TOKEN!r}, id {config.mask_token_id})"), line


def test_eval_threads_and_model_names_as_the_other_verbs(quickstart_env, tiny_qwen3):
    from orthrus_sglang.model_dir import resolve_model_dir
    from orthrus_sglang.ref.loader import CheckpointError

    out = orthrus(quickstart_env, "eval", "--model", tiny_qwen3, "--threads", 0)
    assert out.returncode == 2 and "thread count must be >= 1" in out.stderr and "Traceback" not in out.stderr
    # The resolver generate, serve and train use: its error, word for word.
    with pytest.raises(CheckpointError) as resolver_error:
        resolve_model_dir("no-such-model")
    out = orthrus(quickstart_env, "eval", "--model", "no-such-model")
    assert out.returncode == 2 and out.stderr.strip() == f"orthrus: error: {resolver_error.value}", out.stderr


# ---- generate and convert on the quickstart install --------------------------------------------

def test_generate_and_convert_run_on_the_quickstart_install(quickstart_env, tiny_qwen3, tmp_path):
    out = orthrus(quickstart_env, "generate", "--model", tiny_qwen3, "--prompt", "hi", "--max-new-tokens", 4,
                  "--threads", 1, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["stats"]["num_tokens"] >= 1, out.stderr
    write_tiny_plain_llama(tmp_path / "plain")
    out = orthrus(quickstart_env, "convert", tmp_path / "plain", tmp_path / "orthrus", "--block-size", 4,
                  "--mask-token-id", PLAIN_MASK_ID)
    config = json.loads((tmp_path / "orthrus" / "config.json").read_text())
    assert out.returncode == 0 and (config["model_type"], config["block_size"]) == ("orthrus", 4), out.stderr


# ---- serve: the printed examples run and print what they say -------------------------------------

class Served:
    """`orthrus serve` in its own process; its output collected by a thread."""

    def __init__(self, qs: dict, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "orthrus_sglang.cli", "serve", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=qs["env"],
                                     cwd=REPO)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while text not in "".join(self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.1)
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.reader.join(10)


def test_served_examples_run_and_print_what_they_say(quickstart_env, tiny_qwen3):
    server = Served(quickstart_env, "--model", tiny_qwen3, "--port", 0, "--threads", 1)
    try:
        printed = server.wait_for("\nPY\n")
        url = re.search(r"ready at (http://\S+)", printed).group(1)
        curl = re.search(r"^curl .*?'\n", printed, re.DOTALL | re.MULTILINE).group(0)
        example = re.search(r"^python - <<'PY'\n.*?^PY$", printed, re.DOTALL | re.MULTILINE).group(0)
        assert "import os" not in example  # no key: nothing read from the environment
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])  # "python" = this one
        ran = subprocess.run(["bash", "-c", example], capture_output=True, text=True, timeout=120,
                             env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp")})
        assert ran.returncode == 0, ran.stderr
        by_curl = json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120,
                                            env={"PATH": path}).stdout)
        body = json.loads(re.search(r"-d '(.*)'", curl).group(1))
        direct = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
    finally:
        server.stop()
    stats = direct["orthrus"]
    answer = direct["choices"][0]["message"]["content"]
    assert by_curl["choices"][0]["message"]["content"] == answer and by_curl["orthrus"] == stats  # greedy
    lines = ran.stdout.splitlines()
    expected = [*answer.splitlines(), f"tau (tokens per decode step): {stats['tau']}",
                f"acceptance rate per draft position: {stats['acceptance_rate_per_position']}"]
    assert lines == expected, ran.stdout


# ---- --help: every flag of every verb has a help text and its real default ------------------------

def help_entries(text: str) -> dict[str, str]:
    """Flag (its first spelling) or positional name -> its help text, from argparse's output."""
    entries, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
        if m:
            current = m.group(1).split(",")[0].split(" ")[0]
            entries[current] = m.group(2) or ""
        elif line.startswith("   ") and current:
            entries[current] = (entries[current] + " " + line.strip()).strip()
        else:
            current = None
    return entries


def real_default(verb: str, action: argparse.Action):
    """What the verb uses when the flag is not given ('' or None: described in words only)."""
    if action.default not in (None, argparse.SUPPRESS):
        return action.default
    if verb == "train":
        from orthrus_sglang.train.config import TrainConfig

        field = {f.name: f for f in dataclasses.fields(TrainConfig)}.get(action.dest)
        return None if field is None or field.default is dataclasses.MISSING else field.default
    if verb == "serve":
        from orthrus_server.settings import GatewaySettings

        field = GatewaySettings.model_fields.get(action.dest)
        return None if field is None else field.default
    return None


def shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


VERBS = sorted(next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)


@pytest.mark.parametrize("verb", VERBS)
def test_every_flag_has_help_and_its_real_default(verb, quickstart_env):
    out = orthrus(quickstart_env, verb, "--help", timeout=60)
    assert out.returncode == 0, out.stderr
    entries = help_entries(out.stdout)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        text = entries.get(name, "")
        assert text, f"{verb} {name}: no help"
        assert "(default: )" not in text and text.count("default") <= 1, f"{verb} {name}: {text}"
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if not action.option_strings or action.required or "(required)" in text or switch:
            continue  # positionals and required flags have no default; plain switches are off
        m = re.search(r"\(default: ([^)]+)\)", text)
        assert m, f"{verb} {name}: no default in {text!r}"
        real = real_default(verb, action)
        if real not in (None, ""):
            assert m.group(1).split(",")[0] == shown(real), f"{verb} {name}: shows {m.group(1)!r}, uses {real!r}"
