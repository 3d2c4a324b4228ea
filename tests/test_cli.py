"""The `orthrus generate` command, run as users run it (a real subprocess)."""

import json
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
