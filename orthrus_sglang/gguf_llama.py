"""Read a llama-architecture GGUF file: HF Llama config values, float32 tensors, the tokenizer.

Only the `gguf` package (llama.cpp's own reader), numpy and `tokenizers`: nothing here goes
through transformers, so the result is the same with every transformers release (5.17+ refuses
to save a GGUF-loaded model; 5.4's GGUF tokenizer converter adds a BOS to every encoding). The
tensors are what transformers' GGUF loader produces, bit for bit (tests/test_demo.py checks it):
dequantized to float32 by gguf.quants.dequantize, Q and K rows un-permuted, HF Llama names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# GGUF per-layer tensor -> HF Llama module (both + ".weight").
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
CONTROL_TOKEN = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL


class GGUFError(ValueError):
    """A GGUF file this reader cannot turn into a plain Llama checkpoint."""


def _field(reader, key: str, default=None):
    """A metadata value: str, number, or a list of them (decoded by hand: ReaderField.contents()
    only exists from gguf 0.16 on)."""
    from gguf import GGUFValueType

    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise GGUFError(f"GGUF metadata {key!r} is missing")
        return default
    kind = field.types[-1]  # an array's element type comes last
    values = [bytes(field.parts[i]).decode("utf-8") if kind == GGUFValueType.STRING else field.parts[i].tolist()[0]
              for i in field.data]
    return values if field.types[0] == GGUFValueType.ARRAY else values[0]


def llama_config(reader) -> dict:
    """HF LlamaConfig keyword arguments from the GGUF metadata (llama architecture only)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise GGUFError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    if "llama.rope.scaling.type" in reader.fields or any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise GGUFError("GGUF files with rope scaling are not supported")
    return {
        "vocab_size": int(_field(reader, "llama.vocab_size", len(reader.fields["tokenizer.ggml.tokens"].data))),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, "llama.attention.head_count_kv", heads)),
        "head_dim": int(_field(reader, "llama.rope.dimension_count", hidden // heads)),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0))},
        "tie_word_embeddings": all(t.name != "output.weight" for t in reader.tensors),
    }


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert_hf_to_gguf permute() of Q/K rows.

    llama.cpp stores each head's rotary pairs interleaved (GPT-J style, x0 x1 | x2 x3 ...); HF
    Llama rotates the two halves of the head (NeoX style). Same as transformers' GGUF loader.
    """
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def hf_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if suffix != "weight":
        raise GGUFError(f"unexpected GGUF tensor {gguf_name!r}")
    if stem in GLOBAL_NAMES:
        return f"{GLOBAL_NAMES[stem]}.weight"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.weight"
    raise GGUFError(f"unexpected GGUF tensor {gguf_name!r}")


def open_gguf(path: str | Path):
    from gguf import GGUFReader

    return GGUFReader(str(path))


def llama_tensors(reader, config: dict) -> dict[str, np.ndarray]:
    """{HF name: float32 array} of every tensor in the file."""
    from gguf.quants import dequantize

    tensors = {}
    for t in reader.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        kind = t.name.split(".")[-2]
        if kind == "attn_q":
            w = unpermute_rope_rows(w, config["num_attention_heads"])
        elif kind == "attn_k":
            w = unpermute_rope_rows(w, config["num_key_value_heads"])
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    return tensors


def bpe_tokenizer(reader):
    """The GGUF's byte-level BPE vocabulary as a `tokenizers.Tokenizer`, plus its special token ids.

    Control tokens (GGUF token type 3) become special added tokens; no BOS is prepended (the
    chat template writes every special token itself).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ttype in zip(tokens, types) if ttype == CONTROL_TOKEN])
    specials = {name: int(_field(reader, f"tokenizer.ggml.{name}_token_id"))
                for name in ("bos", "eos", "unknown", "padding") if f"tokenizer.ggml.{name}_token_id" in reader.fields}
    return tok, specials


def chat_template(reader) -> str | None:
    return _field(reader, "tokenizer.chat_template") if "tokenizer.chat_template" in reader.fields else None
