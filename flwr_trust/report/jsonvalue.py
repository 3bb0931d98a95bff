"""The JSON form of audit records: the one canonical serialization that is hashed and written,
the record hash, and the conversion of payloads to plain JSON data (non-finite floats as
strings, numpy values as Python numbers; anything else that is not JSON is refused). audit.py
states the format; this module is the part of it that does not touch files."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from flwr_trust.errors import AuditLogError


def canonical_json(obj: Any) -> str:
    """The one serialization that is hashed and written: sorted keys, no spaces, raw UTF-8."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of every field of `record` except "hash"."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def to_json_value(value: Any, where: str = "payload") -> Any:
    """Convert `value` to plain JSON data (see the module docstring), or raise AuditLogError.

    Converting up front means the record that is hashed, written and returned is exactly the
    record that is read back, so verification never depends on how a type happens to serialize.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AuditLogError(
                f"{where} is a string that is not valid Unicode (it has a lone surrogate).",
                fix="Decode the text properly before logging it.",
            ) from exc
        return str.__str__(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _key(key, where)
            if name in out:
                raise AuditLogError(
                    f"{where} has two keys that both become {name!r} in JSON.",
                    fix="Give every key a distinct string name.",
                )
            out[name] = to_json_value(item, f"{where}[{name!r}]")
        return out
    if isinstance(value, list | tuple):
        return [to_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy, without importing it
        return to_json_value(value.tolist(), where)
    raise AuditLogError(
        f"{where} is a {type(value).__name__}, which cannot be stored as JSON.",
        fix="Convert it to a number, string, list or dict before logging it.",
    )


def _key(key: Any, where: str) -> str:
    """A dict key as a JSON object key: strings as they are, integers as their decimal string."""
    if hasattr(key, "dtype") and hasattr(key, "tolist"):
        key = key.tolist()
    if isinstance(key, str):
        return to_json_value(key, where)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key))
    raise AuditLogError(
        f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys must be strings.",
        fix="Use string (or integer) keys.",
    )
