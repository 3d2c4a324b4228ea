"""One seam: only orthrus_sglang/sgl/compat.py imports SGLang internals or names a private SGLang method.

Public ``sglang.*`` (``sglang.Engine``, ``sglang.bench_serving``) is fine anywhere; tests are exempt.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEAM = ROOT / "orthrus_sglang" / "sgl" / "compat.py"
INTERNAL = re.compile(r"sglang\.(srt|kernels)\b|\b(get_spec_info|_sample_from_probs|_create_tokenized_object|"
                      r"_sample_simulated_acc_len|compute_spec_v2_logprobs|compute_spec_logprobs|MultiPlatformOp|"
                      r"BaseFusedOp)\b")
# The step builds on its own types (sgl/step_info.py), not DFLASH's. (bench/ runs DFLASH as a baseline.)
DFLASH = re.compile(r"\b(DFlash\w+|\w*dflash_\w+|make_draft_input_v2)\b")


def offending_lines(folders, pattern, skip=()):
    out = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in skip:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    out.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return out


def test_only_compat_touches_sglang_internals():
    offenders = offending_lines(("orthrus_sglang", "bench", "server"), INTERNAL, skip=(SEAM,))
    assert not offenders, "SGLang internals outside sgl/compat.py:\n" + "\n".join(offenders)


def test_the_step_uses_no_dflash_class():
    offenders = offending_lines(("orthrus_sglang/sgl",), DFLASH)
    assert not offenders, "DFLASH's step types in the plugin:\n" + "\n".join(offenders)
