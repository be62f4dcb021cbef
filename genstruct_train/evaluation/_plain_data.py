"""Plain data across the sandbox boundary (standard library only; its source is also pasted into the
sandboxed runner). A value is encoded as JSON of [tag, payload] pairs, so only None, bool, int, float,
complex, str, bytes, list, tuple, set, frozenset and dict of those cross; decoding builds exactly
those built-in types (never pickle, never an object of the sender's choosing)."""

import json
import numbers

MAX_DEPTH = 64


def encode(x, depth=0):
    """[tag, payload] for a plain value; anything else raises TypeError."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if x is None:
        return ["n", None]
    if isinstance(x, bool):
        return ["b", bool(x)]
    if isinstance(x, numbers.Integral):
        return ["i", str(int(x))]
    if isinstance(x, numbers.Real):
        return ["f", repr(float(x))]
    if isinstance(x, numbers.Complex):
        return ["c", [repr(float(x.real)), repr(float(x.imag))]]
    if isinstance(x, str):
        return ["s", str.__str__(x)]
    if isinstance(x, (bytes, bytearray)):
        return ["y", bytes(x).hex()]
    for tag, kind in (("l", list), ("t", tuple), ("S", set), ("F", frozenset)):
        if isinstance(x, kind):
            return [tag, [encode(v, depth + 1) for v in list(x)]]
    if isinstance(x, dict):
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in list(dict.items(x))]]
    raise TypeError(f"a value of type {type(x).__name__} is not plain data")


def decode(item, depth=0):
    """The built-in value of an encode() result (strict: any other shape raises ValueError)."""
    if depth > MAX_DEPTH or type(item) is not list or len(item) != 2 or type(item[0]) is not str:
        raise ValueError("malformed plain data")
    tag, payload = item
    if tag == "n" and payload is None:
        return None
    if tag == "b" and type(payload) is bool:
        return payload
    if tag == "i" and type(payload) is str:
        return int(payload)
    if tag == "f" and type(payload) is str:
        return float(payload)
    if tag == "c" and type(payload) is list and len(payload) == 2:
        return complex(float(payload[0]), float(payload[1]))
    if tag == "s" and type(payload) is str:
        return payload
    if tag == "y" and type(payload) is str:
        return bytes.fromhex(payload)
    if type(payload) is list:
        if tag in "ltSF" and len(tag) == 1:
            kind = {"l": list, "t": tuple, "S": set, "F": frozenset}[tag]
            return kind(decode(v, depth + 1) for v in payload)
        if tag == "d":
            out = {}
            for pair in payload:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("malformed plain data")
                out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
            return out
    raise ValueError("malformed plain data")


def dumps(x) -> str:
    return json.dumps(x, separators=(",", ":"))


def loads(line):
    return json.loads(line)
