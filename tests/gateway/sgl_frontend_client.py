"""An SGLang frontend script (`sgl.function` + `sgl.RuntimeEndpoint`) pointed at the gateway.

Run by test_gateway_sglang_frontend.py in a child process, because the real `sglang` package is
heavy and may live outside this environment. Prints one JSON line with what it got.

    python sgl_frontend_client.py http://127.0.0.1:8000
"""

import json
import sys

import sglang as sgl


@sgl.function
def qa(s, question):
    s += "Q: " + question + "\nA:"
    s += sgl.gen("answer", max_tokens=8, temperature=0)


@sgl.function
def chat(s, question):
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("reply", max_tokens=6, temperature=0))


def main() -> None:
    sgl.set_default_backend(sgl.RuntimeEndpoint(sys.argv[1]))
    state = qa.run(question="What is 7 * 6?")
    streamed = "".join(qa.run(question="What is 7 * 6?", stream=True).text_iter("answer"))
    batch = chat.run_batch([{"question": "hi"}, {"question": "yo"}])
    print(json.dumps({"answer": state["answer"], "verify_ct": state.get_meta_info("answer").get("spec_verify_ct"),
                      "streamed": streamed, "batch": [s["reply"] for s in batch]}))


if __name__ == "__main__":
    main()
