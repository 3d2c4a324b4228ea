"""Logprobs are the AR view's: Orthrus reports what plain AR decoding and a transformers forward give.

The model is a random transformers Qwen3 converted to Orthrus; drafts come from the AR reference
(wrong at a cycling position) so that steps accept several drafts and every verify row is used.
"""

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from orthrus_sglang import SamplingParams
from orthrus_sglang.convert import convert_to_orthrus
from orthrus_sglang.logprobs import LogprobRequest
from orthrus_sglang.ref.engine import Engine

SHAPE = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, eos_token_id=5)
PROMPTS = [[3, 17, 42, 99, 250, 8], [11, 12], [7, 200, 31, 64, 5, 90, 91, 92, 93, 18, 44]]
ASK = LogprobRequest(top_k=4, prompt_start=0, token_ids=(0, 5, 299))


@pytest.fixture(scope="module")
def hf_and_path(tmp_path_factory):
    torch.manual_seed(0)
    hf = Qwen3ForCausalLM(Qwen3Config(**SHAPE))
    with torch.no_grad():  # spread the weights: peaked, distinct distributions
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p)) if "norm" in name else p.normal_(0, 0.08)
    tmp = tmp_path_factory.mktemp("logprobs")
    hf.eval().save_pretrained(tmp / "plain")
    convert_to_orthrus(tmp / "plain", tmp / "orthrus", block_size=4, mask_token_id=7)
    return hf, tmp / "orthrus"


def hf_logprobs(hf, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """[len(ids), V]: row p = log P(next token | ids[:p+1]) from one transformers forward."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits / temperature, dim=-1)


class OracleDrafts:
    """Drafts = the AR greedy continuation, with the draft at position (step % B) made wrong."""

    def __init__(self, references: dict[tuple, list[int]]):
        self.references = references

    def __call__(self, reqs, drafts):
        k = drafts.shape[1]
        for i, r in enumerate(reqs):
            ref, m = self.references[tuple(r.prompt_ids)], len(r.output_ids)
            drafts[i] = torch.tensor((ref[m : m + k] + [0] * k)[:k])
            n = r.stats.num_steps % (k + 1)
            if n < k:
                drafts[i, n] = (drafts[i, n] + 1) % SHAPE["vocab_size"]
        return drafts


def check_against(hf, prompt, result, ask: LogprobRequest, temperature: float = 1.0) -> None:
    ids = prompt + result.token_ids
    raw, scaled = hf_logprobs(hf, ids), hf_logprobs(hf, ids, temperature)
    assert len(result.logprobs) == len(result.token_ids)
    for j, (tok, got) in enumerate(zip(result.token_ids, result.logprobs)):
        row = scaled[len(prompt) - 1 + j]
        assert got.logprob == pytest.approx(row[tok].item(), abs=1e-4)
        assert [t for t, _ in got.top] == row.topk(ask.top_k).indices.tolist()
        assert [t for t, _ in got.by_id] == list(ask.token_ids)
        assert [v for _, v in got.by_id] == pytest.approx(row[list(ask.token_ids)].tolist(), abs=1e-4)
    start = ask.prompt_start
    assert len(result.prompt_logprobs) == len(prompt) - start  # empty when start == len(prompt)
    assert all(x.logprob is None and x.top is None for x in result.prompt_logprobs[:1])
    for p, got in zip(range(start + 1, len(prompt)), result.prompt_logprobs[1:]):
        assert got.logprob == pytest.approx(raw[p - 1, prompt[p]].item(), abs=1e-4)  # never temperature-scaled
        assert got.top[0][0] == raw[p - 1].argmax().item()


def test_greedy_orthrus_logprobs_equal_ar_only_and_transformers(hf_and_path):
    hf, path = hf_and_path
    engine = Engine(path, max_batch_size=4)
    params = SamplingParams(max_new_tokens=20, ignore_eos=True)
    ar = engine.generate(PROMPTS, params, ar_only=True, logprobs=ASK)
    engine.draft_hook = OracleDrafts({tuple(p): r.token_ids for p, r in zip(PROMPTS, ar)})
    orthrus = engine.generate(PROMPTS, params, logprobs=ASK)
    for prompt, a, o in zip(PROMPTS, ar, orthrus):
        assert o.token_ids == a.token_ids
        assert o.stats.num_accepted_drafts > 0 and o.stats.num_steps < 19  # multi-token steps happened
        assert [x.logprob for x in o.logprobs] == pytest.approx([x.logprob for x in a.logprobs], abs=1e-5)
        assert [[t for t, _ in x.top] for x in o.logprobs] == [[t for t, _ in x.top] for x in a.logprobs]
        assert o.prompt_logprobs == a.prompt_logprobs  # the same prefill
        check_against(hf, prompt, o, ASK)


def test_sampled_logprobs_are_temperature_scaled_ar_logprobs(hf_and_path):
    hf, path = hf_and_path
    engine = Engine(path, max_batch_size=4)
    params = SamplingParams(max_new_tokens=16, temperature=0.7, top_k=20, seed=3, ignore_eos=True)
    ask = LogprobRequest(top_k=2, prompt_start=2, token_ids=(9,))
    for ar_only in (False, True):
        for prompt, result in zip(PROMPTS, engine.generate(PROMPTS, params, ar_only=ar_only, logprobs=ask)):
            check_against(hf, prompt, result, ask, temperature=0.7)


def test_prefill_only_request_scores_the_prompt_and_emits_nothing(hf_and_path):
    hf, path = hf_and_path
    engine = Engine(path, max_batch_size=2)
    prompt = PROMPTS[2]
    (result,) = engine.generate([prompt], SamplingParams(max_new_tokens=0), logprobs=LogprobRequest(prompt_start=0))
    assert result.token_ids == [] and result.logprobs == [] and result.finish_reason == "length"
    raw = hf_logprobs(hf, prompt)
    assert [x.logprob for x in result.prompt_logprobs[1:]] == pytest.approx(
        [raw[p - 1, prompt[p]].item() for p in range(1, len(prompt))], abs=1e-4)
    assert not engine.has_unfinished() and len(engine.free_slots) == 2


def test_logprobs_stop_with_the_tokens(hf_and_path):
    _, path = hf_and_path
    engine = Engine(path, max_batch_size=2)
    free = engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=12, ignore_eos=True))[0].token_ids
    stop = free[5]
    (result,) = engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=12, stop_token_ids=(stop,)),
                                logprobs=LogprobRequest())
    assert result.token_ids == free[: free.index(stop) + 1] and len(result.logprobs) == len(result.token_ids)
    assert result.prompt_logprobs is None and result.logprobs[0].top is None


@pytest.mark.parametrize("ask, message", [
    (LogprobRequest(prompt_start=7), "past the end of the prompt"),
    (LogprobRequest(token_ids=(300,)), "logprob token ids must be in"),
])
def test_bad_logprob_requests_are_refused(hf_and_path, ask, message):
    engine = Engine(hf_and_path[1], max_batch_size=1)
    with pytest.raises(ValueError, match=message):
        engine.add_request(PROMPTS[0], logprobs=ask)
