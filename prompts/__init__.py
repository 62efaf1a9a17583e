"""Prompt templates as data files, rendered by name.

Each template is a `.txt` file beside this module. Fields are written `{{name}}`
(double braces, so LaTeX such as `\\boxed{}` and JSON in a template need no
escaping); rendering fails loudly on a field the caller did not pass or a field
passed that the template does not use.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_FIELD = re.compile(r"\{\{(\w+)\}\}")


@cache
def template(name: str) -> str:
    """The text of template `name` (file `prompts/<name>.txt`), whitespace trimmed."""
    try:
        return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise KeyError(f"no prompt template named {name!r} in prompts/") from None


def fields(name: str) -> set[str]:
    """The field names template `name` expects."""
    return set(_FIELD.findall(template(name)))


def render(name: str, **values: str) -> str:
    """Fill template `name` with `values`; every field must be given, and only those.

    >>> render("review_math", question="1+1?", rationale="2. [5]", gold="2")  # doctest: +SKIP
    """
    text = template(name)
    wanted = fields(name)
    missing = wanted - values.keys()
    extra = values.keys() - wanted
    if missing or extra:
        raise KeyError(f"template {name!r}: missing fields {sorted(missing)}, unexpected {sorted(extra)}")
    # Substitute in one pass so a value that itself contains `{{x}}` is left alone.
    return _FIELD.sub(lambda m: str(values[m.group(1)]), text)
