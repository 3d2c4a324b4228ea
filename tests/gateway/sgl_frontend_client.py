"""An SGLang frontend script (`sgl.function` + `sgl.RuntimeEndpoint`) pointed at the gateway.

Run by the gateway tests in a child process, because the real `sglang` package is heavy and may
live outside this environment. Prints one JSON line with what it got.

    python sgl_frontend_client.py URL [all]     # gen, stream, batch, then select and gen with logprobs
    python sgl_frontend_client.py URL basic     # gen, stream, batch
    python sgl_frontend_client.py URL logprobs  # select and gen with logprobs
"""

import json
import sys

import sglang as sgl
from sgl_frontend_prompts import CHOICES, LOGPROB_PROMPT, LOGPROB_START, SELECT_PROMPT, TOP_LOGPROBS


@sgl.function
def qa(s, question):
    s += "Q: " + question + "\nA:"
    s += sgl.gen("answer", max_tokens=8, temperature=0)


@sgl.function
def chat(s, question):
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("reply", max_tokens=6, temperature=0))


@sgl.function
def pick(s):
    s += SELECT_PROMPT
    s += sgl.select("colour", choices=CHOICES)


@sgl.function
def scored(s):
    s += LOGPROB_PROMPT
    s += sgl.gen("count", max_tokens=6, temperature=0, return_logprob=True, top_logprobs_num=TOP_LOGPROBS,
                 return_text_in_logprobs=True, logprob_start_len=LOGPROB_START)


def logprob_checks() -> dict:
    picked = pick.run()
    meta = picked.get_meta_info("colour")
    gen = scored.run()
    info = gen.get_meta_info("count")
    return {"selected": picked["colour"], "normalized_prompt_logprobs": meta["normalized_prompt_logprobs"],
            "select_input_token_logprobs": meta["input_token_logprobs"], "count": gen["count"],
            "output_token_logprobs": info["output_token_logprobs"], "output_top_logprobs": info["output_top_logprobs"],
            "input_token_logprobs": info["input_token_logprobs"], "prompt_tokens": info["prompt_tokens"]}


def basic_checks() -> dict:
    state = qa.run(question="What is 7 * 6?")
    streamed = "".join(qa.run(question="What is 7 * 6?", stream=True).text_iter("answer"))
    batch = chat.run_batch([{"question": "hi"}, {"question": "yo"}])
    return {"answer": state["answer"], "verify_ct": state.get_meta_info("answer").get("spec_verify_ct"),
            "streamed": streamed, "batch": [s["reply"] for s in batch]}


def main() -> None:
    sgl.set_default_backend(sgl.RuntimeEndpoint(sys.argv[1]))
    mode = sys.argv[2] if len(sys.argv) > 2 else "all"
    got = basic_checks() if mode in ("all", "basic") else {}
    if mode in ("all", "logprobs"):
        got.update(logprob_checks())
    print(json.dumps(got))


if __name__ == "__main__":
    main()
