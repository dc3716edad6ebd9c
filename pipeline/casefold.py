"""Case-insensitive matching of long alternations, faster: the pattern's letters lower-cased and matched
case-sensitively on the lower-cased text. Python's ``re`` folds the case of every character it compares under
``re.I``; for the validator's leak / instruction patterns and the diagnosis phrase tries that made them 1.5-5x
slower. Spans and matched text are the original text's; where lower-casing changes the text's length (a few
non-ASCII letters, 'İ'), spans would not line up and the ``re.I`` pattern itself is used."""
from __future__ import annotations

import re
from collections.abc import Iterator


def lower_pattern(pattern: str) -> str:
    """``pattern`` with its letters lower-cased; its escapes (``\\S``, ``\\W``, ``\\b``, ``\\u0041``) and group names
    kept."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith(("(?P<", "(?P="), i):  # a group's name is kept as written
            j = pattern.index(">" if pattern[i + 3] == "<" else ")", i)
            out.append(pattern[i:j + 1])
            i = j + 1
            continue
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append(pattern[i].lower())
        i += 1
    return "".join(out)


class Folded:
    """A ``re.I`` pattern and its lower-cased twin; ``search`` / ``finditer`` give the original text's spans."""

    def __init__(self, pattern: re.Pattern):
        if not pattern.flags & re.IGNORECASE:
            raise ValueError("Folded needs a re.IGNORECASE pattern")
        self.slow = pattern
        # a scoped case-sensitive group ("(?-i:QRS)") would be lost by lower-casing: such a pattern is not folded
        self.fast = pattern if "(?-i" in pattern.pattern else \
            re.compile(lower_pattern(pattern.pattern), pattern.flags & ~re.IGNORECASE)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        low = text.lower()
        rx, target = (self.fast, low) if len(low) == len(text) and self.fast is not self.slow else (self.slow, text)
        for m in rx.finditer(target):
            yield m.start(), m.end()

    def search(self, text: str) -> tuple[int, int] | None:
        low = text.lower()
        m = self.fast.search(low) if len(low) == len(text) and self.fast is not self.slow else self.slow.search(text)
        return (m.start(), m.end()) if m else None
