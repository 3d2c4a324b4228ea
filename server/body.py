"""Read a JSON request body into a pydantic model, with one clear 400 message per failure.

Routes parse their own bodies (instead of FastAPI's automatic parsing) so that bad UTF-8,
malformed JSON and schema errors each get a message that names the problem and the field.
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from .errors import bad_request

M = TypeVar("M", bound=BaseModel)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part).lower() in _TYPE_TAGS or str(part).startswith(("function-", "json-")):
            continue  # pydantic's union-member and validator tags, not field names
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_message(err: ValidationError) -> tuple[str, str | None]:
    first = err.errors(include_url=False)[0]
    param = _param(first["loc"]) or None
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param
    msg = first["msg"].removeprefix("Value error, ")
    if param is None or msg.startswith(f"`{param.rsplit('.', 1)[-1]}`"):  # the message names its field already
        return (f"Invalid request body: {msg}" if param is None else msg), param
    return f"Invalid value for '{param}': {msg}", param


def _lone_surrogate(value, path: str) -> str | None:
    """Path of the first string (or key) holding an unpaired surrogate, else None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(item, dict):
            for k, v in item.items():
                name = k.encode("utf-8", "backslashreplace").decode()  # the path is echoed back: keep it encodable
                key = f"{where}.{name}" if where else name
                if name != k:
                    return key
                stack.append((v, key))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


async def read_json(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request(f"The request body is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}).")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad_request(f"The request body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno}).")
    except RecursionError:
        raise bad_request("The request body is not valid JSON: nested too deeply.")
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object, got {type(data).__name__}.")
    where = _lone_surrogate(data, "")
    if where is not None:
        # Valid JSON ("\\ud800") but not encodable text: tokenizers would fail on it later.
        raise bad_request(f"Invalid value for '{where or 'body'}': the string contains a lone UTF-16 surrogate.",
                          param=where or None)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        message, param = validation_message(e)
        raise bad_request(message, param=param)
    except RecursionError:
        raise bad_request("The request body is nested too deeply.")
