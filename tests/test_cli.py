"""The `orthrus generate` command, run as users run it (a real subprocess)."""

import json
import os
import subprocess
import sys

from orthrus_sglang import SamplingParams
from orthrus_sglang.prompting import encode_prompt
from orthrus_sglang.ref.engine import Engine


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "orthrus_sglang.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_generate_json_matches_the_engine(tiny_qwen3):
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "hello there", "--max-new-tokens", 12, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    engine = Engine(tiny_qwen3, max_batch_size=1)
    prompt = encode_prompt(engine.tokenizer, "hello there")
    expected = engine.generate([prompt], SamplingParams(max_new_tokens=12))[0]
    assert data["prompt_token_ids"] == prompt and prompt[0] == engine.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert data["token_ids"] == expected.token_ids
    assert data["text"] == engine.tokenizer.decode(expected.token_ids, skip_special_tokens=True)
    assert data["stats"]["block_size"] == 4 and data["stats"]["num_steps"] == expected.stats.num_steps
    assert data["mode"] == "orthrus"


def test_generate_ar_raw_and_block_size(tiny_qwen3):
    ar = json.loads(run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--raw", "--ar",
                            "--max-new-tokens", 10, "--json").stdout)
    orthrus = json.loads(run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--raw", "--block-size", 8,
                                 "--max-new-tokens", 10, "--json").stdout)
    tokenizer = Engine(tiny_qwen3, max_batch_size=1).tokenizer
    assert ar["prompt_token_ids"] == orthrus["prompt_token_ids"] == tokenizer.encode("abc")  # no chat template
    assert ar["token_ids"] == orthrus["token_ids"] and ar["mode"] == "ar"
    assert ar["stats"]["tau"] == 1.0 and orthrus["stats"]["block_size"] == 8


def test_generate_adaptive_block_policy(tiny_qwen3):
    ar = json.loads(run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--raw", "--ar",
                            "--max-new-tokens", 24, "--json").stdout)
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--raw", "--block-size", 8,
                  "--block-policy", "adaptive", "--max-new-tokens", 24, "--json")
    adaptive = json.loads(out.stdout)
    assert adaptive["token_ids"] == ar["token_ids"]
    policy = adaptive["block_policy"]
    assert policy["adaptive"] and policy["candidates"] == [1, 2, 4, 8]
    assert sum(policy["steps_by_block_size"].values()) == adaptive["stats"]["num_steps"]
    human = run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--block-policy", "adaptive",
                    "--max-new-tokens", 8)
    assert human.returncode == 0 and "steps by block size (adaptive)" in human.stderr, human.stderr
    bad = run_cli("generate", "--model", tiny_qwen3, "--prompt", "abc", "--block-policy", "smart")
    assert bad.returncode == 2 and "invalid choice: 'smart'" in bad.stderr


def test_generate_human_output_and_sampling_flags(tiny_qwen3):
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "hi", "--temperature", "0.8", "--top-k", 20,
                  "--top-p", "0.9", "--seed", 3, "--max-new-tokens", 8)
    assert out.returncode == 0, out.stderr
    assert "tau" in out.stderr and "accept-length histogram" in out.stderr


def test_generate_bad_input_is_one_clear_line(tiny_qwen3, tmp_path):
    out = run_cli("generate", "--model", tmp_path, "--prompt", "x")
    assert out.returncode == 2 and "no config.json" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "x", "--top-p", "0")
    assert out.returncode == 2 and "top_p must be in (0, 1]" in out.stderr


HEAVY = ("torch", "transformers", "numpy", "fastapi", "uvicorn", "pydantic")


def test_help_and_usage_errors_import_nothing_heavy():
    # Instant help: what a command needs is imported when it runs, never at parse time.
    code = (
        "import sys\n"
        "from orthrus_sglang.cli import main\n"
        "for argv in (['--help'], ['serve', '--help'], ['generate', '--help'], ['convert', '--help'],\n"
        "             ['train', '--help'], ['eval', '--help'], ['generate'], ['nope']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == (0 if '--help' in argv else 2), (argv, e.code)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert "--threads" in out.stdout and "usage: orthrus serve" in out.stdout


def test_importing_the_package_still_registers_the_config_lazily(tiny_qwen3):
    code = ("import sys, orthrus_sglang; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
            "from transformers import AutoConfig; "
            f"print(type(AutoConfig.from_pretrained({str(tiny_qwen3)!r})).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "OrthrusConfig", out.stderr


def torch_threads(env: dict, *args: str, affinity: set | None = None) -> str:
    pin = f"import os; os.sched_setaffinity(0, {affinity!r}); " if affinity else ""
    code = pin + f"from orthrus_sglang.threads import apply_threads; print(apply_threads(*{list(map(int, args))!r}))"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ORTHRUS_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**clean, **env})
    assert out.returncode == 0 or not out.stdout, out.stderr
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def test_thread_defaults_and_overrides():
    from orthrus_sglang.threads import default_threads

    assert [default_threads(n) for n in (1, 2, 3, 4, 16, 64)] == [1, 1, 1, 2, 8, 8]
    assert torch_threads({}, affinity={0}) == "1"  # half of one CPU, at least 1
    assert torch_threads({"OMP_NUM_THREADS": "2"}, affinity={0}) == "2"  # the user's OMP setting stands
    assert torch_threads({"ORTHRUS_THREADS": "3", "OMP_NUM_THREADS": "2"}) == "3"
    assert torch_threads({"ORTHRUS_THREADS": "3"}, "2") == "2"  # the flag wins
    assert "ORTHRUS_THREADS must be a positive integer" in torch_threads({"ORTHRUS_THREADS": "many"})


def test_generate_threads_flag(tiny_qwen3):
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "hi", "--max-new-tokens", 4, "--threads", 1, "--json")
    assert out.returncode == 0, out.stderr
    out = run_cli("generate", "--model", tiny_qwen3, "--prompt", "hi", "--threads", 0)
    assert out.returncode == 2 and "thread count must be >= 1" in out.stderr and "Traceback" not in out.stderr
