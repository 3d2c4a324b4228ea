"""Independent logprobs for the gateway tests: one full forward of a model over a whole sequence.

No cache, no engine, no speculation: what the gateway reports must equal these.
"""

from __future__ import annotations

import numpy as np
import torch


def orthrus_forward(path):
    """The checkpoint's AR view (the reference model in plain PyTorch): ids -> logits [len, V]."""
    from orthrus_sglang.ref.loader import load_model
    from orthrus_sglang.ref.model import ForwardBatch

    model = load_model(path)

    def forward(ids: list[int]) -> torch.Tensor:
        batch = ForwardBatch(torch.tensor([0]), torch.tensor([0]), len(ids))
        return model(torch.tensor([ids]), model.new_cache(1, len(ids)), batch, "ar")[0].float()

    return forward


def hf_forward(path):
    """A transformers checkpoint: ids -> logits [len, V]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()

    def forward(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0].float()

    return forward


def token_logprobs(forward, ids: list[int]) -> list[float | None]:
    """Entry p: log P(ids[p] | ids[:p]); None for p = 0."""
    lp = torch.log_softmax(forward(ids), dim=-1)
    return [None] + [lp[p - 1, ids[p]].item() for p in range(1, len(ids))]


def expected_select(forward, tokenizer, prompt: str, choices: list[str]) -> tuple[str, list[float]]:
    """What `sgl.select` must pick (SGLang's token_length_normalized, no token healing): the choice with
    the highest mean logprob over its tokens and the prompt's last token."""
    prompt_len = len(tokenizer.encode(prompt))
    start = max(prompt_len - 2, 0)  # the frontend's logprob_start_len
    means = []
    for c in choices:
        lps = token_logprobs(forward, tokenizer.encode(prompt + c))[start + 1:]
        means.append(sum(lps) / len(lps))
    return choices[int(np.argmax(means))], means


def check_generation(forward, tokenizer, prompt: str, got: dict, *, start: int, top: int, tol: float = 1e-4) -> None:
    """The client's gen with return_logprob: output, top and prompt logprobs against the forward."""
    prompt_ids = tokenizer.encode(prompt)
    out_ids = [t for _, t, _ in got["output_token_logprobs"]]
    ids = prompt_ids + out_ids
    lp = torch.log_softmax(forward(ids), dim=-1)
    assert got["prompt_tokens"] == len(prompt_ids) and out_ids
    for j, (value, token, text) in enumerate(got["output_token_logprobs"]):
        row = lp[len(prompt_ids) - 1 + j]
        assert token == row.argmax().item()  # greedy
        assert abs(value - row[token].item()) < tol and text == tokenizer.decode([token])
        assert [t for _, t, _ in got["output_top_logprobs"][j]] == row.topk(top).indices.tolist()
    expected_in = token_logprobs(forward, prompt_ids)[start:]
    expected_in[0] = None  # SGLang reports no logprob for the first scored prompt position
    assert [t for _, t, _ in got["input_token_logprobs"]] == prompt_ids[start:]
    for (value, _, _), want in zip(got["input_token_logprobs"], expected_in):
        assert (value is None and want is None) or abs(value - want) < tol
