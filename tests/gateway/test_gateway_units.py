"""Small pure pieces of the gateway: incremental text with stop strings, stats mapping, admission,
SGLang stream parsing, settings and CLI flags."""

import argparse
import asyncio

import pytest
from transformers import AutoTokenizer

from orthrus_server.backends.base import GenRequest, wait_shielded
from orthrus_server.backends.sglang import _SGLangStream, sglang_sampling_params
from orthrus_server.logprobs import LogprobRequest, TokenLogprob, TokenTexts
from orthrus_server.cli import add_arguments, settings_from_args
from orthrus_server.detok import TextAssembler
from orthrus_server.errors import APIError
from orthrus_server.limits import Admission
from orthrus_server.stats import OrthrusStats, merge_all


@pytest.fixture(scope="module")
def tok(tiny_ckpt):
    return AutoTokenizer.from_pretrained(str(tiny_ckpt))


def feed(tok, text_bytes: bytes, stop=None, chunk=1):
    """Push the byte tokenizer's ids `chunk` at a time, as a backend would commit them."""
    ids = tok.encode(text_bytes.decode("utf-8"))
    asm, deltas = TextAssembler(tok, stop), []
    for i in range(0, len(ids), chunk):
        deltas.append(asm.push(ids[i:i + chunk], finished=i + chunk >= len(ids)))
        if asm.stopped:
            break
    return asm, deltas


def test_multibyte_characters_are_never_split(tok):
    _, deltas = feed(tok, "a€b中c".encode())
    assert "".join(deltas) == "a€b中c" and "\ufffd" not in "".join(deltas)
    assert all("\ufffd" not in d for d in deltas)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_stop_string_across_chunks(tok, chunk):
    asm, deltas = feed(tok, b"hello world, stop here", stop=["rld,"], chunk=chunk)
    assert asm.stopped and asm.text == "hello wo" and "".join(deltas) == "hello wo"


def test_stop_prefix_is_held_back_then_released(tok):
    asm = TextAssembler(tok, ["xyz"])
    assert asm.push(tok.encode("abx"), finished=False) == "ab"  # "x" may start "xyz"
    assert asm.push(tok.encode("q"), finished=False) == "xq"
    assert asm.push(tok.encode("xy"), finished=True) == "xy"  # finished: everything goes out


def test_earliest_of_several_stops_wins(tok):
    asm, _ = feed(tok, b"one two three", stop=["three", "two"])
    assert asm.text == "one "


def test_stats_from_sglang_meta_match_the_engine_definition():
    meta = {"spec_verify_ct": 4, "completion_tokens": 9, "spec_accept_histogram": [1, 1, 0, 2]}
    s = OrthrusStats.from_sglang_meta(meta, block_size=4)
    assert s.accepted_per_position == [3, 2, 2]  # draft i accepted in every step that accepted >= i
    assert s.tau == (7 + 4) / 4
    assert OrthrusStats.from_sglang_meta({"completion_tokens": 3}, 4) is None  # no speculative steps
    bare = OrthrusStats.from_sglang_meta({"spec_verify_ct": 2, "completion_tokens": 5}, None)
    assert bare.tau == 2.5 and bare.tau_from_tokens
    merged = merge_all([s, None, OrthrusStats(4, 1, 2, [1, 0, 0], [0, 1, 0, 0])])
    assert merged.num_steps == 5 and merged.accepted_per_position == [4, 2, 2]


def test_sglang_stream_parsing_cumulative_and_incremental():
    cum = [{"output_ids": [5], "meta_info": {"completion_tokens": 1}},
           {"output_ids": [5, 6, 7], "meta_info": {"completion_tokens": 3}},
           {"output_ids": [5, 6, 7, 8], "meta_info": {"completion_tokens": 4, "finish_reason": {"type": "length"}}}]
    inc = [{"output_ids": [5], "meta_info": {"completion_tokens": 1}},
           {"output_ids": [6, 7], "meta_info": {"completion_tokens": 3}},
           {"output_ids": [8], "meta_info": {"completion_tokens": 4, "finish_reason": {"type": "length"}}}]
    for objs in (cum, inc):
        received, got = 0, []
        for obj in objs:
            chunk, received = _SGLangStream._parse(obj, received, 4)
            got += chunk.token_ids
        assert got == [5, 6, 7, 8] and chunk.finish_reason == "length"


def test_sglang_stream_logprobs_cumulative_and_incremental():
    """meta_info logprob lists grow with output_ids (default) or come per chunk (incremental streaming)."""
    spec = LogprobRequest(top_k=1, prompt_start=1)
    lp = {t: [-t / 10, t, None] for t in (5, 6, 7)}
    top = {t: [[-0.01 * t, 3, None]] for t in (5, 6, 7)}
    prompt = {"input_token_logprobs": [[None, 1, None], [-0.5, 2, None]],
              "input_top_logprobs": [None, [[-0.25, 4, None]]]}

    def obj(ids, all_ids, total):
        return {"output_ids": ids, "meta_info": {"completion_tokens": total, **prompt,
                                                 "output_token_logprobs": [lp[t] for t in all_ids],
                                                 "output_top_logprobs": [top[t] for t in all_ids]}}

    cum = [obj([5], [5], 1), obj([5, 6, 7], [5, 6, 7], 3)]
    inc = [obj([5], [5], 1), obj([6, 7], [6, 7], 3)]
    for objs in (cum, inc):
        received, got, prompts = 0, [], []
        for o in objs:
            chunk, received = _SGLangStream._parse(o, received, 4, spec)
            got += chunk.logprobs
            prompts.append(chunk.prompt_logprobs)
        assert got == [TokenLogprob(-t / 10, ((3, -0.01 * t),)) for t in (5, 6, 7)]
        assert prompts[0] == [TokenLogprob(None), TokenLogprob(-0.5, ((4, -0.25),))]


def test_a_cancelled_close_still_finishes_then_the_cancel_goes_on():
    """Issue 24: a cancel landing inside a stream's close stopped httpcore half-way and leaked the connection."""
    async def main():
        closed = asyncio.Event()

        async def close():
            await asyncio.sleep(0.05)
            closed.set()

        task = asyncio.ensure_future(wait_shielded(asyncio.ensure_future(close())))
        for _ in range(2):  # twice: a client gone, then a shutdown
            await asyncio.sleep(0.01)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed.is_set()
        assert await wait_shielded(asyncio.ensure_future(asyncio.sleep(0, result=7))) == 7

    asyncio.run(main())


def test_sglang_sampling_params():
    p = sglang_sampling_params(GenRequest([1], 5, temperature=0.5, top_k=0, min_p=0.1, seed=3, stop_token_ids=(9,)))
    assert p == {"max_new_tokens": 5, "temperature": 0.5, "top_p": 1.0, "top_k": -1, "min_p": 0.1,
                 "stop_token_ids": [9], "ignore_eos": False, "sampling_seed": 3}


def test_admission_fifo_queue_and_429():
    async def main():
        adm = Admission(max_active=1, max_queue=1, retry_after_s=2)
        first = await adm.acquire()
        waiter = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        with pytest.raises(APIError) as e:
            await adm.acquire()
        assert e.value.status == 429 and e.value.headers == {"Retry-After": "2"}
        first.release()
        first.release()  # idempotent
        second = await waiter
        assert adm.active == 1 and not adm.waiting
        cancelled = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert not adm.waiting
        second.release()
        assert adm.active == 0

    asyncio.run(main())


def test_cli_flags_override_environment(monkeypatch):
    for name in ("ORTHRUS_MODEL", "ORTHRUS_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORTHRUS_PORT", "9001")
    monkeypatch.setenv("ORTHRUS_MAX_QUEUE", "7")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    s = settings_from_args(parser.parse_args(["--model", "m", "--port", "9002"]))
    assert s.port == 9002 and s.max_queue == 7 and s.model_id == "m"
    with pytest.raises(SystemExit, match="backend"):
        settings_from_args(parser.parse_args(["--model", "m", "--backend", "nope"]))
    monkeypatch.delenv("ORTHRUS_PORT")
    with pytest.raises(SystemExit, match="needs a model"):
        settings_from_args(parser.parse_args([]))


def test_bad_settings_exit_with_one_line_naming_the_flag_or_variable(monkeypatch):
    for name in ("ORTHRUS_MODEL", "ORTHRUS_BACKEND", "ORTHRUS_PORT", "ORTHRUS_THREADS"):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def message(argv):
        with pytest.raises(SystemExit) as exc:
            settings_from_args(parser.parse_args(["--model", "m", *argv]))
        text = str(exc.value.code)
        assert text.startswith("invalid gateway settings: ") and "\n" not in text and "pydantic.dev" not in text
        return text

    assert message(["--threads", "0"]) == ("invalid gateway settings: --threads 0: "
                                           "Input should be greater than or equal to 1")
    monkeypatch.setenv("ORTHRUS_PORT", "-5")
    both = message(["--dtype", "fp9"])
    assert "ORTHRUS_PORT '-5': Input should be greater than or equal to 0" in both and "--dtype 'fp9'" in both


def test_token_bytes_are_exact_for_partial_characters(tok):
    """OpenAI's `bytes` is the token's own bytes: a token holding part of a UTF-8 character decodes
    alone to U+FFFD, whose bytes are not the token's."""
    text = "é€ a 🙂"
    ids = tok.encode(text)
    texts = TokenTexts(tok)
    assert "\ufffd" in texts(ids)  # the byte tokenizer splits every multi-byte character
    assert bytes(b for raw in texts.bytes(ids) for b in raw) == text.encode("utf-8")
    assert all(len(raw) == 1 for raw in texts.bytes(ids))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")  # an added token: its text's bytes
    assert texts.bytes([im_end]) == [list(b"<|im_end|>")]


def test_token_bytes_of_byte_fallback_tokens():
    """SentencePiece-style byte fallback (<0xE2>), as Llama-family tokenizers have."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(vocab={"<0xE2>": 0, "<0x82>": 1, "<0xAC>": 2, "a": 3, "<unk>": 4}, merges=[],
                               byte_fallback=True, unk_token="<unk>"))
    raw.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    texts = TokenTexts(PreTrainedTokenizerFast(tokenizer_object=raw))
    assert texts([0, 3]) == ["\ufffd", "a"]
    assert texts.bytes([0, 1, 2, 3]) == [[0xE2], [0x82], [0xAC], [ord("a")]]
