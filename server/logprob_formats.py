"""Logprobs on the wire: SGLang's meta_info fields and OpenAI's chat and completions `logprobs` objects."""

from __future__ import annotations

from collections.abc import Sequence

from .logprobs import LogprobRequest, Pairs, TokenLogprob, TokenTexts


def sglang_meta(spec: LogprobRequest, prompt_ids: Sequence[int], prompt_lps: Sequence[TokenLogprob] | None,
                output_ids: Sequence[int], output_lps: Sequence[TokenLogprob], texts: TokenTexts | None) -> dict:
    """SGLang 0.5.17's meta_info logprob fields: [logprob, token id, text or None] triples."""
    prompt_lps = list(prompt_lps or [])
    start = len(prompt_ids) - len(prompt_lps)
    prompt_part = list(prompt_ids[start:])
    meta = {"input_token_logprobs": _triples([lp.logprob for lp in prompt_lps], prompt_part, texts),
            "output_token_logprobs": _triples([lp.logprob for lp in output_lps], output_ids, texts),
            "output_token_logprobs_length": len(output_lps)}
    if spec.top_k > 0:
        meta["input_top_logprobs"] = [_position(lp.top, texts) for lp in prompt_lps]
        meta["output_top_logprobs"] = [_position(lp.top, texts) for lp in output_lps]
    if spec.token_ids is not None:
        meta["input_token_ids_logprobs"] = [_position(lp.by_id, texts) for lp in prompt_lps]
        meta["output_token_ids_logprobs"] = [_position(lp.by_id, texts) for lp in output_lps]
    return meta


def _triples(logprobs: list, ids: Sequence[int], texts: TokenTexts | None) -> list[list]:
    strs = texts(ids) if texts else [None] * len(ids)
    return [[lp, t, s] for lp, t, s in zip(logprobs, ids, strs)]


def _position(pairs: Pairs | None, texts: TokenTexts | None) -> list[list] | None:
    if not pairs:
        return None  # as SGLang: the first prompt position, or nothing asked
    return _triples([v for _, v in pairs], [t for t, _ in pairs], texts)


def openai_chat(token_ids: Sequence[int], lps: Sequence[TokenLogprob], texts: TokenTexts, top: int) -> dict:
    """A chat choice's `logprobs`: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    def entries(ids: Sequence[int], logprobs) -> list[dict]:
        return [{"token": token, "logprob": logprob, "bytes": raw}
                for token, raw, logprob in zip(texts(ids), texts.bytes(ids), logprobs)]

    content = []
    for entry, lp in zip(entries(token_ids, [lp.logprob for lp in lps]), lps):
        best = list(lp.top or ())[:top]
        content.append({**entry, "top_logprobs": entries([t for t, _ in best], [v for _, v in best])})
    return {"content": content, "refusal": None}


def openai_completion(token_ids: Sequence[int], lps: Sequence[TokenLogprob], texts: TokenTexts,
                      offset: int) -> dict:
    """A completion choice's `logprobs`: tokens, token_logprobs, top_logprobs, text_offset.

    top_logprobs holds the requested most likely tokens plus the chosen one (OpenAI's rule), and
    None where nothing precedes the token (an echoed prompt's first token). `offset` is where the
    first token's text starts in the choice's text.
    """
    tokens = texts(token_ids)
    out = {"tokens": tokens, "token_logprobs": [lp.logprob for lp in lps], "top_logprobs": [], "text_offset": []}
    for token_id, token, lp in zip(token_ids, tokens, lps):
        if lp.logprob is None:
            out["top_logprobs"].append(None)
        else:
            best = list(lp.top or ())
            out["top_logprobs"].append({**dict(zip(texts([t for t, _ in best]), (v for _, v in best))),
                                        token: lp.logprob})
        out["text_offset"].append(offset)
        offset += len(token)
    return out


def merge_completion(a: dict | None, b: dict) -> dict:
    """Two consecutive openai_completion objects as one."""
    if a is None:
        return b
    return {k: a[k] + b[k] for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
