"""bench.demo_sglang's engine list from --modes (the runs themselves need a GPU: tests/gpu, docs/results.md)."""

import pytest

from bench import demo_sglang


def test_modes_name_their_engines_and_greedy_twins():
    orthrus = {"speculative_algorithm": "ORTHRUS", "speculative_num_draft_tokens": 16}
    configs = demo_sglang.engine_configs(["orthrus", "orthrus-ag", "orthrus-adaptive-ag", "ar"], orthrus)
    assert configs == [
        ("AR", {}, None),
        ("ORTHRUS", orthrus, None),
        ("ORTHRUS accept graphs", {**orthrus, "accept_graphs": True}, "ORTHRUS"),  # sampling only: greedy is ORTHRUS's
        ("ORTHRUS adaptive accept graphs", {**orthrus, "block_policy": "adaptive", "accept_graphs": True}, None),
    ]
    # with its twin in the run, adaptive-ag measures sampling only
    assert demo_sglang.engine_configs(["ar", "orthrus-adaptive", "orthrus-adaptive-ag"], orthrus)[2][2] == \
        "ORTHRUS adaptive"


@pytest.mark.parametrize("modes, message", [(["ar", "nosuch"], "unknown nosuch"), (["orthrus"], "must include ar")])
def test_bad_modes_are_one_line_errors(modes, message):
    with pytest.raises(ValueError, match=message):
        demo_sglang.engine_configs(modes, {})


def test_cli_refuses_bad_modes_before_loading_anything(capsys):
    with pytest.raises(SystemExit) as exc:
        demo_sglang.main(["--gguf", "/nonexistent", "--out-dir", "/tmp/unused-demo", "--modes", "ar,orthrus-x"])
    assert exc.value.code == 2 and "unknown orthrus-x" in capsys.readouterr().err
