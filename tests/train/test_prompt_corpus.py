"""The shipped prompt corpus and the prompt sets built from it: well-formed chats, splits that never
share a conversation, function or passage, out-of-distribution sources kept out of training,
the same prompts on every call, and chats through the tokenizer's template."""

from __future__ import annotations

import json
import re

import pytest

from orthrus_sglang.testing import write_byte_tokenizer
from orthrus_sglang.train.corpus import (CORPUS_DIR, IN_DISTRIBUTION, OUT_OF_DISTRIBUTION, broad_set, corpus_records,
                                         is_heldout, ood_set)
from orthrus_sglang.train.prompts import encode_prompts, read_jsonl_prompts, read_prompts

ALL_SOURCES = (*IN_DISTRIBUTION, *OUT_OF_DISTRIBUTION)


def key(messages) -> str:
    return json.dumps(messages, sort_keys=True)


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_every_shipped_record_is_a_chat_ending_with_a_user_turn(source):
    records = corpus_records(source)
    assert len(records) >= 100
    for r in records:
        assert r["source"] == source and r["kind"]
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], roles  # alternating, the user's last
        assert all(m["content"].strip() for m in r["messages"])
        assert ("group" in r) == (source in IN_DISTRIBUTION)  # the split key of the trainable sources


def test_sources_md_lists_every_shipped_file():
    table = (CORPUS_DIR / "SOURCES.md").read_text()
    listed = set(re.findall(r"^\| (\w+)\.jsonl\.gz \|", table, flags=re.M))
    assert listed == set(ALL_SOURCES) == {p.name.split(".")[0] for p in CORPUS_DIR.glob("*.jsonl.gz")}


def test_broad_train_and_heldout_share_no_group_and_no_prompt():
    train, heldout = broad_set("train", 6000), broad_set("heldout", 500)
    corpus_train = [r for r in train if r["source"] != "generator"]
    corpus_heldout = [r for r in heldout if r["source"] != "generator"]
    assert {r["source"] for r in corpus_train} == {r["source"] for r in corpus_heldout} == set(IN_DISTRIBUTION)
    assert not any(is_heldout(r) for r in corpus_train) and all(is_heldout(r) for r in corpus_heldout)
    assert not {r["group"] for r in corpus_train} & {r["group"] for r in corpus_heldout}
    assert not {key(r["messages"]) for r in train} & {key(r["messages"]) for r in heldout}
    assert any(len(r["messages"]) > 1 for r in train)  # multi-turn chats are trained on
    kinds = {r["kind"].split("/")[0] for r in train}
    assert {"chat", "code", "summarise", "math"} <= kinds


def test_out_of_distribution_sources_are_never_in_the_broad_mix():
    ood = {key(r["messages"]) for r in ood_set()}
    assert len(ood) == sum(len(corpus_records(s)) for s in OUT_OF_DISTRIBUTION)
    for split, n in (("train", 20000), ("heldout", 500)):
        mix = broad_set(split, n)
        assert not ood & {key(r["messages"]) for r in mix}
        assert not {r["source"] for r in mix} & set(OUT_OF_DISTRIBUTION)
    assert {r["source"] for r in ood_set(6)} == set(OUT_OF_DISTRIBUTION)  # any prefix mixes the sources
    with pytest.raises(ValueError, match="never trained on"):
        read_prompts("ood", 4, split="train")


def test_prompt_sets_are_the_same_on_every_call_and_differ_by_seed():
    assert read_prompts("broad", 200, split="train") == read_prompts("broad", 200, split="train")
    assert read_prompts("broad", 50, split="heldout") == read_prompts("broad", 80, split="heldout")[:50]
    assert read_prompts("ood", 30, split="heldout") == read_prompts("ood", 30, split="heldout")
    assert read_prompts("broad", 50, split="train", seed=1) != read_prompts("broad", 50, split="train")


def test_jsonl_chats_and_texts_are_read_and_bad_lines_named(tmp_path):
    path = tmp_path / "p.jsonl"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "and you?"}]
    path.write_text("\n".join(json.dumps(x) for x in ["plain", {"question": "q?"}, {"messages": chat}]) + "\n")
    assert read_jsonl_prompts(path) == ["plain", "q?", chat]
    path.write_text(json.dumps({"messages": chat[:2]}) + "\n")  # ends with the assistant: nothing to answer
    with pytest.raises(ValueError, match=r"p\.jsonl:1: .*ending with a user turn"):
        read_jsonl_prompts(path)


def test_chats_go_through_the_chat_template(tmp_path):
    tok = write_byte_tokenizer(tmp_path)
    chat = [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "second question"}]
    text_ids, chat_ids = encode_prompts(tok, ["first question", chat])
    assert chat_ids[:len(text_ids) - 3] == text_ids[:-3]  # the same first user turn (before the generation prompt)
    decoded = tok.decode(chat_ids)
    assert decoded.index("first question") < decoded.index("an answer") < decoded.index("second question")
    assert decoded.rstrip().endswith("<|im_start|>assistant")


def test_training_evaluates_every_listed_prompt_set_and_draws_each(tmp_path):
    from orthrus_sglang.train.config import TrainConfig
    from orthrus_sglang.train.plot import plot_tau_curve
    from orthrus_sglang.train.setup import eval_key, eval_prompt_ids

    tok = write_byte_tokenizer(tmp_path / "tok")
    cfg = TrainConfig(model="m", out=str(tmp_path), eval_prompts="broad, ood,builtin", num_eval_prompts=5)
    sets = eval_prompt_ids(cfg, tok)
    assert list(sets) == ["broad", "ood", "builtin"] and all(len(ids) == 5 for ids in sets.values())
    assert [eval_key(i, name, 8) for i, name in enumerate(sets)] == ["B8", "ood:B8", "builtin:B8"]
    with pytest.raises(ValueError, match="eval_prompts must name at least one"):
        TrainConfig(model="m", out=str(tmp_path), eval_prompts=" , ")
    point = {"tau": 2.0, "acceptance_per_position": [0.8, 0.5, 0.2]}
    history = [{"step": s, "B8": point, "ood:B8": point, "/data/my prompts:B8": point} for s in (0, 10)]
    assert plot_tau_curve(history, tmp_path / "curve.png", main_set="broad").stat().st_size > 10_000
    from orthrus_sglang.train.plot import curve_labels

    assert curve_labels(["B8", "ood:B8", "/data/my prompts.jsonl:B16"], "broad") == {
        "B8": "broad B=8", "ood:B8": "ood B=8", "/data/my prompts.jsonl:B16": "my prompts B=16"}
    assert curve_labels(["B8"], "/data/x.jsonl") == {"B8": "x B=8"} and curve_labels(["B8"]) == {"B8": "B=8"}
