"""Text -> prompt token ids, with the tokenizer's chat template when it has one."""

from __future__ import annotations


def encode_prompt(tokenizer, prompt: str, *, raw: bool = False) -> list[int]:
    """A user message through the chat template (generation prompt added), or raw text with ``raw``."""
    if tokenizer is None:
        raise ValueError("this checkpoint has no tokenizer: pass token ids instead of text")
    if not raw and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    return list(tokenizer.encode(prompt, add_special_tokens=True))


def encode_messages(tokenizer, messages: list[dict]) -> list[int]:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model's tokenizer has no chat template")
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
