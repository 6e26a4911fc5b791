"""Keep the API key out of every text that comes back from the provider.

A relay may echo the caller's key in an error, a poll answer or a header: whole, cut short,
URL-encoded or in base64. `Redactor` masks each of those forms, and any run of at least
`MIN_PART` characters of one of them (a key cut by the relay, or by a length limit), so that
nothing of the key reaches the database, a log or an error message. Callers redact first and
cut afterwards. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Final
from urllib.parse import quote

MASK: Final = "***"
MIN_PART: Final = 8  # a run this long of a form of the key is masked too


class Redactor:
    def __init__(self, secret: str) -> None:
        forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]} if secret else set()
        if secret:
            raw = secret.encode()
            forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
            forms |= {form.rstrip("=") for form in list(forms)}
        self._whole = sorted(forms, key=len, reverse=True)
        self._parts = {
            form[i : i + MIN_PART] for form in forms for i in range(len(form) - MIN_PART + 1)
        }
        # Where a part may begin, found in C: most texts hold none, and are done at once.
        self._any_part = (
            re.compile("|".join(re.escape(part) for part in sorted(self._parts)))
            if self._parts
            else None
        )

    def __call__(self, text: str) -> str:
        """`text` with every form of the key, whole or in part, replaced by MASK."""
        for form in self._whole:
            text = text.replace(form, MASK)
        if self._any_part is None or len(text) < MIN_PART:
            return text
        found = self._any_part.search(text)
        if found is None:
            return text
        out: list[str] = []
        start, i = 0, found.start()
        while i <= len(text) - MIN_PART:
            if text[i : i + MIN_PART] not in self._parts:
                i += 1
                continue
            end = i + MIN_PART  # grow the run while each next window is a part too
            while end < len(text) and text[end - MIN_PART + 1 : end + 1] in self._parts:
                end += 1
            out += [text[start:i], MASK]
            start = i = end
        out.append(text[start:])
        return "".join(out)
