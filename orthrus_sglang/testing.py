"""Tiny random checkpoints in the real on-disk format, for tests and examples (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import OrthrusConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def write_byte_tokenizer(path: str | Path):
    """A working byte-level tokenizer: 256 byte tokens + 4 specials (ids 256..259), ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(str(path))
    return fast


def write_tiny_plain_qwen3(path: str | Path, *, seed: int = 0):
    """A tiny random *plain* Qwen3 (transformers' own class, model_type "qwen3") with the byte tokenizer.

    What SGLang serves without the plugin; also the input of ``orthrus convert``. Returns (tokenizer, model).
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = write_byte_tokenizer(path)
    config = Qwen3Config(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=False, torch_dtype="float32")
    model = Qwen3ForCausalLM(config).eval()
    _sharpen_and_save(model, path, seed)
    return tok, model


def write_tiny_plain_llama(path: str | Path, *, seed: int = 0, tie_word_embeddings: bool = True):
    """A tiny random *plain* Llama (model_type "llama", tied embeddings like SmolLM2) with the byte tokenizer.

    The input of ``orthrus train`` in tests and of the CPU rehearsal of scripts/gpu_train_demo.sh.
    Returns (tokenizer, model); the mask token to convert it with is ``<|mask|>`` (id 259).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = write_byte_tokenizer(path)
    config = LlamaConfig(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=tie_word_embeddings, torch_dtype="float32")
    model = LlamaForCausalLM(config).eval()
    _sharpen_and_save(model, path, seed)
    return tok, model


def _sharpen_and_save(model, path, seed: int) -> None:
    """Random weights with logits far from uniform: greedy has clear margins, fp32 rounding cannot flip a token."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 1.2 / param.shape[-1] ** 0.5)
    model.save_pretrained(str(path))


def tiny_config(*, backbone: str = "qwen3", vocab_size: int = 260, block_size: int = 4, **overrides) -> OrthrusConfig:
    values = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                  block_size=block_size, mask_token_id=vocab_size - 1, eos_token_id=vocab_size - 2,
                  backbone=backbone, tie_word_embeddings=backbone == "llama",
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    values.update(overrides)
    return OrthrusConfig(**values)


def random_model(config: OrthrusConfig, *, seed: int = 0, std: float = 0.3, diff_from_ar: bool = False):
    """Random weights large enough that logits are far from uniform (so argmax has no ties).

    ``diff_from_ar`` copies the AR attention into the diffusion view (as ``orthrus convert`` does),
    which makes some drafts right: acceptance > 0 without training.
    """
    from .ref.model import OrthrusForCausalLM

    gen = torch.Generator().manual_seed(seed)
    model = OrthrusForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                fan_in = param.shape[-1] if param.dim() > 1 else 1
                param.copy_(torch.randn(param.shape, generator=gen) * std / fan_in**0.5 * 4)
        if diff_from_ar:
            state = model.state_dict()
            for name, tensor in state.items():
                if "_diff" in name:
                    tensor.copy_(state[name.replace("_diff", "")])
    return model.eval()


def write_tiny_checkpoint(path: str | Path, *, backbone: str = "qwen3", seed: int = 0, with_tokenizer: bool = True,
                          max_shard_bytes: int = 2 << 30, diff_from_ar: bool = False, **config_overrides) -> Path:
    """Write config.json, safetensors and (by default) a byte-level tokenizer with a chat template."""
    from .ref.loader import save_model

    path = Path(path)
    if with_tokenizer:
        write_byte_tokenizer(path)
        # ids 256.. are the specials: <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258, <|mask|> 259
        config_overrides = {"vocab_size": 260, "mask_token_id": 259, "eos_token_id": 258,
                            "pad_token_id": 256, **config_overrides}
    config = tiny_config(backbone=backbone, **config_overrides)
    save_model(random_model(config, seed=seed, diff_from_ar=diff_from_ar), path, max_shard_bytes=max_shard_bytes)
    return path


def exact_ar_distribution(model, prompt: list[int], *, temperature: float, top_k: int = 0, top_p: float = 1.0,
                          min_p: float = 0.0):
    """P(t1, t2, t3) of plain AR sampling after ``prompt``, [V, V, V], by enumerating every prefix.

    For the statistical losslessness tests: only sensible on a tiny vocabulary.
    """
    import itertools

    from .ref.model import ForwardBatch
    from .sampling import filtered_probs

    vocab = model.config.vocab_size

    def next_probs(prefixes):
        ids = torch.tensor(prefixes)
        n = len(prefixes)
        batch = ForwardBatch(torch.arange(n), torch.zeros(n, dtype=torch.long), ids.shape[1])
        logits = model(ids, model.new_cache(n, ids.shape[1]), batch, "ar")[:, -1:]
        return filtered_probs(logits, torch.full((n,), float(temperature)), torch.full((n,), top_k),
                              torch.full((n,), float(top_p)), torch.full((n,), float(min_p)))[:, 0].double()

    p1 = next_probs([prompt])[0]
    p2 = next_probs([prompt + [a] for a in range(vocab)])
    p3 = next_probs([prompt + [a, b] for a, b in itertools.product(range(vocab), range(vocab))])
    return p1.view(vocab, 1, 1) * p2.view(vocab, vocab, 1) * p3.view(vocab, vocab, vocab)


def chi_square_pvalue(samples, probs) -> float:
    """Goodness of fit of sampled token tuples [N, k] to the joint ``probs`` ([V] * k).

    Cells expected fewer than 5 times are pooled; a draw from a zero-probability cell fails outright.
    """
    from scipy.stats import chisquare

    vocab = probs.shape[0]
    index = torch.zeros(samples.shape[0], dtype=torch.long)
    for col in range(samples.shape[1]):
        index = index * vocab + samples[:, col]
    observed = torch.bincount(index, minlength=probs.numel()).double()
    expected = probs.flatten().double() * samples.shape[0]
    zero = expected == 0
    if observed[zero].sum() > 0:
        return 0.0
    big, small = expected >= 5, (expected < 5) & ~zero
    obs, exp = observed[big], expected[big]
    if small.any():
        obs = torch.cat([obs, observed[small].sum().view(1)])
        exp = torch.cat([exp, expected[small].sum().view(1)])
    return float(chisquare(obs.numpy(), (exp * obs.sum() / exp.sum()).numpy()).pvalue)


def sglang_sampling_check(engine, model, prompt: list[int], setting: dict, n: int) -> dict:
    """n seeded 3-token samples from an SGLang engine (sampling_seed = request index, so the p-values
    are the same on every run) against the exact AR joint of ``model`` (enumerated).

    Returns p-values of (t1, t2), (t2, t3) and t3, verify steps, accepted drafts, steps with a
    rejection, and, when min_p is set without top_k, the p-value against the min_p-dropped law (power).
    """
    outs = engine.generate(input_ids=[prompt] * n, sampling_params=[
        {**setting, "max_new_tokens": 3, "ignore_eos": True, "sampling_seed": i} for i in range(n)])
    samples = torch.tensor([o["output_ids"] for o in outs])
    exact = dict(temperature=setting["temperature"], top_k=max(setting.get("top_k", -1), 0),
                 top_p=setting.get("top_p", 1.0), min_p=setting.get("min_p", 0.0))

    def pvalues(joint):
        return [chi_square_pvalue(samples[:, :2], joint.sum(2)), chi_square_pvalue(samples[:, 1:], joint.sum(0)),
                chi_square_pvalue(samples[:, 2:], joint.sum((0, 1)))]

    result = {"pvalues": pvalues(exact_ar_distribution(model, prompt, **exact)),
              "verify_steps": sum(o["meta_info"]["spec_verify_ct"] for o in outs),
              "accepted": sum(o["meta_info"]["spec_num_correct_drafts"] for o in outs),
              "rejected_steps": sum(sum(o["meta_info"]["spec_correct_drafts_histogram"][:3]) for o in outs),
              "outputs": samples.tolist()}
    if exact["min_p"] > 0 and exact["top_k"] == 0:
        result["power_pvalue"] = min(pvalues(exact_ar_distribution(model, prompt, **{**exact, "min_p": 0.0})))
    return result


def near_tie_report(model, prompts: list[list[int]], a: list[list[int]], b: list[list[int]]) -> dict:
    """Where two greedy decodings of the same prompts first differ, was it a near-tie?

    Recomputes, with ``model`` (the reference engine's model, in its own dtype) along decoding
    ``a``, the logit gap between the two tokens chosen at each first difference, and the top-2
    gap at every step of every sequence. Rounding flips (bf16/fp16 kernels ordering sums
    differently) land on the smallest of those gaps; a real bug lands anywhere.
    Returns {"differing", "gaps", "percentile_of_gaps", "top2_gaps", "fp32_sides"}.
    """
    from .ref.model import ForwardBatch

    gaps, top2_gaps, sides = [], [], {"a": 0, "b": 0, "neither": 0}
    with torch.no_grad():
        for prompt, x, y in zip(prompts, a, b):
            seq = list(prompt) + list(x[:-1])
            zero = torch.tensor([0], device=model.device)
            batch = ForwardBatch(zero, zero, len(seq))
            ids = torch.tensor([seq], device=model.device)
            logits = model(ids, model.new_cache(1, len(seq)), batch, "ar")[0, len(prompt) - 1:].float()
            top2 = logits.topk(2, dim=-1).values
            top2_gaps += (top2[:, 0] - top2[:, 1]).tolist()
            if list(x) == list(y):
                continue
            i = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), None)
            if i is None:  # one is a prefix of the other: a length difference, not a token flip
                gaps.append(float("inf"))
                continue
            gaps.append(abs(logits[i, x[i]] - logits[i, y[i]]).item())
            best = int(logits[i].argmax())
            sides["a" if best == x[i] else "b" if best == y[i] else "neither"] += 1
    ranked = torch.tensor(top2_gaps)
    percentiles = [float((ranked < g).float().mean()) * 100 for g in gaps]
    return {"differing": len(gaps), "gaps": gaps, "percentile_of_gaps": percentiles, "top2_gaps": top2_gaps,
            "fp32_sides": sides}


# ---- sampling on a realistic vocabulary (a leak of V / 2^24 per draw shows there, not at V = 16) ----
def write_large_vocab_checkpoint(path: str | Path, *, vocab_size: int = 1 << 17, logit_scale: float = 6.0,
                                 seed: int = 0, block_size: int = 4) -> Path:
    """A tiny Orthrus checkpoint with a large vocabulary and LM-like logits: lm_head scaled so that
    each next-token distribution has a handful of likely tokens and a long tail (top_p 0.9 keeps
    tens of tokens, not most of the vocabulary). No tokenizer (token ids only)."""
    from .ref.loader import save_model

    config = tiny_config(vocab_size=vocab_size, block_size=block_size)
    model = random_model(config, seed=seed, diff_from_ar=True)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    save_model(model, Path(path))
    return Path(path)


def _ar_next_probs(model, ids: torch.Tensor, setting: dict, first: int) -> torch.Tensor:
    """Plain AR sampling's law of the token at each position first..L of ids [n, L] (position L: the
    next one) under ``setting`` (temperature, top_k, top_p, min_p; 0 = off): float32 [n, L - first + 1, V]."""
    from .ref.model import ForwardBatch
    from .sampling import filtered_probs

    n, length = ids.shape
    batch = ForwardBatch(torch.arange(n), torch.zeros(n, dtype=torch.long), length)
    with torch.no_grad():
        logits = model(ids, model.new_cache(n, length), batch, "ar")[:, first - 1 :].float()

    def full(value):
        return torch.full((n,), value)

    return filtered_probs(logits, full(float(setting.get("temperature", 1.0))), full(max(int(setting.get("top_k", 0)), 0)),
                          full(float(setting.get("top_p", 1.0))), full(float(setting.get("min_p", 0.0))))


def ar_filtered_probs(model, sequences: list[list[int]], start: int, setting: dict, chunk: int = 16) -> torch.Tensor:
    """p(sequences[i][t] | sequences[i][:t]) under plain AR sampling with ``setting``, for t >= start:
    float64 [n, L - start]. Sequences share one length L; computed ``chunk`` sequences at a time."""
    ids_all = torch.tensor(sequences)
    parts = []
    for i in range(0, ids_all.shape[0], chunk):
        ids = ids_all[i : i + chunk]
        probs = _ar_next_probs(model, ids, setting, start)[:, :-1]
        parts.append(probs.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1).double())
    return torch.cat(parts)


def sparse_exact_joint(model, prompt: list[int], setting: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact AR law of the first two sampled tokens on any vocabulary, by enumerating only the
    tokens the filters keep: (support token ids [m], joint float64 [m, m] over support x support).
    Needs a filter that keeps few tokens (top_k, top_p or min_p on sharp logits)."""
    length = len(prompt)
    p1 = _ar_next_probs(model, torch.tensor([prompt]), setting, length)[0, -1].double()
    first = p1.nonzero().view(-1)
    prefixes = torch.tensor([list(prompt) + [int(t)] for t in first])
    p2 = _ar_next_probs(model, prefixes, setting, length + 1)[:, -1].double()  # [m1, V]
    support = torch.unique(torch.cat([first, p2.sum(0).nonzero().view(-1)]))
    index = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    index[support] = torch.arange(support.numel())
    joint = torch.zeros(support.numel(), support.numel(), dtype=torch.float64)
    joint[index[first].unsqueeze(1), index[support].unsqueeze(0)] = p1[first].unsqueeze(1) * p2[:, support]
    return support, joint


def large_vocab_sampling_check(model, prompt: list[int], setting: dict, outputs: list[list[int]]) -> dict:
    """Seeded outputs of one prompt under ``setting`` against plain AR sampling on a large vocabulary.

    filtered_out: emitted tokens whose AR probability under the request's filters is 0 (must be 0:
    a leak of rate r shows about r * draws times); pvalue: chi-square of (t1, t2) against the
    exact joint (sparse_exact_joint), small cells pooled, a draw outside the support fails it."""
    seqs = [list(prompt) + list(o) for o in outputs]
    p = ar_filtered_probs(model, seqs, len(prompt), setting)
    support, joint = sparse_exact_joint(model, prompt, setting)
    index = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    index[support] = torch.arange(support.numel())
    first_two = index[torch.tensor([o[:2] for o in outputs])]
    inside = (first_two >= 0).all(1)
    pvalue = chi_square_pvalue(first_two[inside], joint) if inside.all() else 0.0
    return {"filtered_out": int((p == 0).sum()), "tokens": p.numel(), "pvalue": pvalue,
            "support": int(support.numel()), "first_token_support": int((joint.sum(1) > 0).sum())}


def sglang_large_vocab_check(engine, model, prompt: list[int], setting: dict, n: int, max_new_tokens: int = 8) -> dict:
    """large_vocab_sampling_check of n seeded requests through an SGLang engine (sampling_seed = index),
    plus "draws": the keyed draws that could have leaked (each request's first token and one bonus or
    residual token per verify step)."""
    outs = engine.generate(input_ids=[prompt] * n, sampling_params=[
        {**setting, "max_new_tokens": max_new_tokens, "ignore_eos": True, "sampling_seed": i} for i in range(n)])
    result = large_vocab_sampling_check(model, prompt, setting, [o["output_ids"] for o in outs])
    result["draws"] = n + sum(o["meta_info"]["spec_verify_ct"] for o in outs)
    return result
