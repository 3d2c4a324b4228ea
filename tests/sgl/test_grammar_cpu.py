"""Grammar-constrained requests through ORTHRUS in real SGLang (CPU engine, llguidance: SGLang's
xgrammar backend allocates its bitmask in pinned memory, which needs a CUDA driver).

The drafts are unconstrained; every verify row is masked by the request's grammar before
acceptance (worker.py), so a constrained ORTHRUS request must be exactly the constrained AR one.
100 requests (regex, JSON schema, EBNF; every grammar's language is finite, so each request ends
by the grammar, not by the token budget): each output is valid and equal to AR greedy's.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from orthrus_sglang.testing import write_tiny_checkpoint

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["answer", "ok", "n"],
          "properties": {"answer": {"enum": ["yes", "no", "maybe"]}, "ok": {"type": "boolean"},
                         "n": {"enum": [1, 2, 3, 40]}}}
SCHEMA_LIST = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"enum": ["red", "green", "blue"]}}
# (kind, grammar, a regex the output must fully match: EBNF languages written as regexes)
GRAMMARS = [
    ("regex", r"(yes|no|maybe)", None),
    ("regex", r"[0-9]{3}-[a-c]{2}", None),
    ("regex", r"(red|green|blue) (cat|dog|bird)s?", None),
    ("regex", r"[A-Z][a-z]{2,4}!", None),
    ("json_schema", json.dumps(SCHEMA), None),
    ("json_schema", json.dumps(SCHEMA_LIST), None),
    ("ebnf", 'root ::= "a" mid "z"\nmid ::= "b" | "c" "d" | "e" mid', r"a(e{0,3})(b|cd)z"),
    ("ebnf", 'root ::= pair ("," pair)?\npair ::= key "=" digit\nkey ::= "x" | "y"\ndigit ::= [0-9]',
     r"[xy]=[0-9](,[xy]=[0-9])?"),
    ("regex", r"(ab|cd){1,3}", None),
    ("ebnf", 'root ::= "<" word ">"\nword ::= "ok" | "no" | "yes"', r"<(ok|no|yes)>"),
]
MAX_NEW_TOKENS = 48


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("grammar"), diff_from_ar=True, block_size=4)


@pytest.fixture(scope="module")
def engines(checkpoint, engine_factory):
    common = dict(grammar_backend="llguidance", constrained_json_disable_any_whitespace=True, max_running_requests=16)
    return (engine_factory(checkpoint, speculative_algorithm="ORTHRUS", **common),
            engine_factory(checkpoint, own_process=True, **common))  # see sgl_engine.ChildEngine


def requests() -> list[tuple[str, dict]]:
    """100 (prompt, sampling params): each grammar with 10 prompts."""
    out = []
    for i in range(100):
        kind, grammar, _ = GRAMMARS[i % len(GRAMMARS)]
        prompt = f"Request {i}: answer in the format asked, {'please' if i % 3 else 'now'}."
        out.append((prompt, {"temperature": 0.0, "max_new_tokens": MAX_NEW_TOKENS, kind: grammar}))
    return out


def valid(index: int, text: str) -> bool:
    kind, grammar, pattern = GRAMMARS[index % len(GRAMMARS)]
    if kind == "json_schema":
        try:
            jsonschema.validate(json.loads(text), json.loads(grammar))
        except (ValueError, jsonschema.ValidationError):
            return False
        return True
    return re.fullmatch(pattern or grammar, text) is not None


def test_100_grammar_requests_valid_and_equal_to_ar(engines):
    orthrus, ar = engines
    reqs = requests()
    prompts, params = [p for p, _ in reqs], [s for _, s in reqs]
    got = orthrus.generate(prompt=prompts, sampling_params=params)
    want = ar.generate(prompt=prompts, sampling_params=params)
    invalid = [(i, o["text"]) for i, o in enumerate(got) if not valid(i, o["text"])]
    assert not invalid, f"{len(invalid)} invalid outputs, e.g. {invalid[:3]}"
    assert all(o["meta_info"]["finish_reason"]["type"] == "stop" for o in got)  # ended by the grammar
    differ = [i for i, (a, b) in enumerate(zip(got, want)) if a["output_ids"] != b["output_ids"]]
    assert not differ, f"{len(differ)} outputs differ from AR, e.g. request {differ[:3]}"
    steps = sum(o["meta_info"]["spec_verify_ct"] for o in got)
    tokens = sum(len(o["output_ids"]) for o in got)
    print(f"\n[grammar] 100 requests valid and equal to AR; {tokens} tokens in {steps} ORTHRUS steps")
    assert steps < tokens  # drafts were accepted under the grammar masks, not only bonus tokens
