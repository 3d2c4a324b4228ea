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


def test_report_shows_the_block_sizes_adaptive_ran():
    """results.md: each adaptive row says which block sizes its steps took (from the engine's counters)."""
    row = {"concurrency": 32, "temperature": 0.0, "tokens": 1000, "tok_s": 900.0, "tau": 2.5,
           "acceptance_per_position": [0.8, 0.5]}
    results = {"hardware": "H100", "attention_backend": "flashinfer", "prompts": 8, "max_new_tokens": 64,
               "block_size": 16, "deterministic_speed_runs": False, "speed_runs_identical": {},
               "runs": [{**row, "label": "AR", "mode": "AR", "tok_s": 1000.0, "steps_by_block_size": {}},
                        {**row, "label": "ORTHRUS adaptive", "mode": "ORTHRUS adaptive",
                         "steps_by_block_size": {"16": 60, "4": 30, "1": 10}}]}
    md = demo_sglang.render(results)
    assert "| ORTHRUS adaptive | 32 | 0 | 1000 | 900 | 0.90x | 2.50 | 0.80 0.50 | B=16: 60%, B=4: 30%, B=1: 10% |" in md
    assert "| AR | 32 | 0 | 1000 | 1000 | 1.00x | 2.50 | 0.80 0.50 |  |" in md
