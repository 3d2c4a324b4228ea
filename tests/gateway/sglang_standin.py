"""A small stand-in for a SGLang server: the subset of SGLang's HTTP protocol the gateway uses.

NOT SGLang. It serves the reference engine behind SGLang's native wire format so that the
gateway's SGLang backend (and its down / recover paths) can be tested on a machine without
SGLang. What it speaks, as SGLang 0.5.x does:
  GET  /health                    200 with an empty body
  GET  /get_model_info            model_path, tokenizer_path, is_generation
  GET  /get_server_info           context_length, speculative_num_draft_tokens, ...
  POST /generate                  `text` or `input_ids`, `sampling_params`, `stream`, `rid`;
                                  answers {text, output_ids, meta_info}; streamed as `data: {json}`
                                  lines with cumulative text and output_ids, then `data: [DONE]`.
                                  meta_info: id, finish_reason {type, ...}, prompt_tokens,
                                  completion_tokens, cached_tokens, spec_verify_ct,
                                  spec_accept_length, spec_accept_histogram.
                                  Unknown sampling fields -> 400 {"error": {"message"}} (as SGLang).
  POST /abort_request             {"rid"}
  GET  /standin/stats             (stand-in only) counts of requests and aborts, for assertions
One request is decoded at a time. A client that disconnects mid-stream is aborted.

    python sglang_standin.py --model DIR --port PORT
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

SAMPLING_KEYS = {"max_new_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "stop_token_ids", "ignore_eos",
                 "sampling_seed", "skip_special_tokens", "spaces_between_special_tokens", "n", "frequency_penalty",
                 "presence_penalty", "repetition_penalty", "min_new_tokens", "regex", "json_schema"}


class StandIn:
    def __init__(self, model: str):
        from orthrus_sglang.ref.engine import Engine

        torch.set_num_threads(1)
        self.model = model
        self.engine = Engine(model, max_batch_size=1)
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "aborted": 0, "abort_requests": 0}

    def params(self, sp: dict):
        from orthrus_sglang import SamplingParams

        unknown = set(sp) - SAMPLING_KEYS
        if unknown:
            raise ValueError(f"unexpected sampling parameters: {sorted(unknown)}")
        return SamplingParams(max_new_tokens=sp.get("max_new_tokens", 128), temperature=sp.get("temperature", 1.0),
                              top_p=sp.get("top_p", 1.0), top_k=max(sp.get("top_k", -1), 0),
                              seed=sp.get("sampling_seed"), stop_token_ids=tuple(sp.get("stop_token_ids") or ()),
                              ignore_eos=sp.get("ignore_eos", False))

    def run(self, prompt_ids, params, rid, emit) -> dict:
        """Decode one request; emit(obj) after every step. Returns the final object."""
        eng, tok = self.engine, self.engine.tokenizer
        output: list[int] = []
        with self.lock:
            self.stats["requests"] += 1
            eng.add_request(prompt_ids, params, request_id=rid)
            try:
                while True:
                    (out,) = eng.step()
                    output += out.new_token_ids
                    s = out.stats
                    finish = None
                    if out.finished:
                        finish = ({"type": "length", "length": len(output)} if out.finish_reason == "length"
                                  else {"type": "stop", "matched": output[-1]})
                    meta = {"id": rid, "finish_reason": finish, "prompt_tokens": len(prompt_ids),
                            "completion_tokens": len(output), "cached_tokens": 0, "spec_verify_ct": s.num_steps,
                            "spec_accept_length": len(output) / s.num_steps if s.num_steps else 0.0,
                            "spec_accept_histogram": list(s.accept_length_histogram)}
                    obj = {"text": tok.decode(output, skip_special_tokens=True), "output_ids": list(output),
                           "meta_info": meta}
                    emit(obj)
                    if out.finished:
                        return obj
            except BaseException:
                eng.abort(rid)
                self.stats["aborted"] += 1
                raise


class Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.0"  # one request per connection; a stream ends when the socket closes

    def log_message(self, *args):
        pass

    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = self.standin
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/get_model_info":
            self.send_json({"model_path": s.model, "tokenizer_path": s.model, "is_generation": True})
        elif self.path in ("/get_server_info", "/server_info"):
            self.send_json({"context_length": s.engine.max_seq_len, "speculative_algorithm": "ORTHRUS",
                            "speculative_num_draft_tokens": s.engine.block_size})
        elif self.path == "/standin/stats":
            self.send_json(s.stats)
        else:
            self.send_json({"detail": "Not Found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/abort_request":
            self.standin.stats["abort_requests"] += 1
            return self.send_json({})
        if self.path != "/generate":
            return self.send_json({"detail": "Not Found"}, 404)
        s = self.standin
        try:
            params = s.params(body.get("sampling_params") or {})
            ids = body["input_ids"] if "input_ids" in body else s.engine.tokenizer.encode(body["text"])
            if len(ids) + params.max_new_tokens > s.engine.max_seq_len:
                raise ValueError(f"Requested token count exceeds the model's maximum context length "
                                 f"of {s.engine.max_seq_len} tokens.")
        except (ValueError, KeyError, TypeError) as e:
            return self.send_json({"error": {"message": str(e)}}, 400)
        rid = body.get("rid") or "standin"
        if not body.get("stream"):
            return self.send_json(s.run(ids, params, rid, lambda obj: None))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def emit(obj):
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        try:
            s.run(ids, params, rid, emit)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: run() aborted the request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    Handler.standin = StandIn(args.model)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"sglang stand-in listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
