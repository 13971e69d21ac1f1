"""A Griffe extension for the API reference (mkdocs.yml, mkdocstrings ``extensions``).

The docstrings are plain text, where ``x[a][b]`` is indexing. Markdown reads ``[a][b]`` as a reference link,
and mkdocstrings then looks for an object named ``b`` and fails the strict build. This extension escapes
the second bracket of every ``][`` outside code spans and fenced blocks, so the text shows as written; the
source files are not changed.
"""

from __future__ import annotations

import re

import griffe

_CODE = re.compile(r"(```.*?```|(`+).+?\2)", re.S)


def escape_reference_brackets(text: str) -> str:
    """``text`` with ``][`` written as ``]\\[`` outside code."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out.append(text[pos : m.start()].replace("][", "]\\["))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].replace("][", "]\\["))
    return "".join(out)


class PlainBrackets(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = escape_reference_brackets(obj.docstring.value)
