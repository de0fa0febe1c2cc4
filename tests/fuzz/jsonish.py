"""Strategies for JSON-ish client input: odd types, huge numbers, deep nesting, surrogate
escapes, and text that is almost JSON. Raw snippets are spliced into ``json.dumps`` output, so a
frame can carry what ``json.dumps`` would never write."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# depths around the interpreter's recursion limit (1000) and far beyond it
DEPTHS = (
    st.sampled_from([2, 100, 500, 800, 900, 950, 990, 1000, 1100, 3000, 100_000])
    | st.integers(0, 3000)
    | st.integers(700, 1200)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


values: st.SearchStrategy[Any] = st.recursive(scalars, _containers, max_leaves=12)


@st.composite
def raw_snippet(draw: st.DrawFn) -> str:
    """JSON text ``json.dumps`` does not write, or only with effort."""
    kind = draw(
        st.sampled_from(["deep-array", "deep-object", "digits", "float", "surrogate", "escape"])
        | st.sampled_from(["deep-array", "deep-object"])
    )
    if kind == "deep-array":
        depth = draw(DEPTHS)
        return "[" * depth + "]" * depth
    if kind == "deep-object":
        depth = draw(DEPTHS)
        return '{"a":' * depth + "1" + "}" * depth
    if kind == "digits":  # int() refuses more than 4300 digits
        n = draw(st.sampled_from([4299, 4300, 4301, 5000]) | st.integers(1, 6000))
        return draw(st.sampled_from(["", "-"])) + "9" * n
    if kind == "float":
        return draw(st.sampled_from(["1e999", "-1e999", "1e-999", "0." + "1" * 5000, "1E+400"]))
    if kind == "surrogate":  # lone or paired surrogate escapes inside a string
        esc = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\udc00\\ud800"]))
        return f'"a{esc}b"'
    return '"' + draw(st.sampled_from(["\\u0000", "\\\\", '\\"', "\\/", "\\uffff"])) + '"'


RAW = "\x00raw{}\x00"  # a placeholder string, replaced by its snippet after dumps


def splice(value: Any, snippets: list[str], ensure_ascii: bool = True) -> str:
    """``json.dumps(value)`` with every placeholder ``RAW.format(i)`` replaced by snippet i."""
    text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)
    for i, snippet in enumerate(snippets):
        text = text.replace(json.dumps(RAW.format(i)), snippet)
    return text


@st.composite
def odd_value(draw: st.DrawFn, snippets: list[str], likely: list[Any] | None = None) -> Any:
    """A value for a field: one of ``likely``, anything JSON, or a raw snippet's placeholder."""
    options = st.sampled_from(likely) if likely else st.nothing()
    kinds = ["likely", "likely", "value", "raw"] if likely else ["value", "raw"]
    kind = draw(st.sampled_from(kinds))
    if kind == "likely":
        return draw(options)
    if kind == "value":
        return draw(values)
    snippets.append(draw(raw_snippet()))
    return RAW.format(len(snippets) - 1)


@st.composite
def json_text(draw: st.DrawFn, value: Any, snippets: list[str]) -> str:
    """``value`` as JSON text (raw snippets spliced in), sometimes cut or mangled."""
    text = splice(value, snippets, ensure_ascii=draw(st.booleans()))
    mangle = draw(st.sampled_from(["", "", "", "cut", "insert", "drop"]))
    if mangle and text:
        at = draw(st.integers(0, len(text) - 1))
        if mangle == "cut":
            text = text[:at]
        elif mangle == "insert":
            junk = draw(st.sampled_from([*'{}[]",:\\', "\\u", "NaN"]))
            text = text[:at] + junk + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    return text
