"""Prompt templates as data files, rendered by name.

Each template is a `.txt` file beside this module. Fields are written `{{name}}`
(double braces, so LaTeX such as `\\boxed{}` and JSON in a template need no
escaping); rendering fails loudly on a field the caller did not pass or a field
passed that the template does not use. A user's folder overlays the built-in set
(`Templates(folder, fallback=BUILTIN)`): its files replace the built-in ones of the
same name, and may leave out fields (a feedback prompt without the gold hint).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

_FIELD = re.compile(r"\{\{(\w+)\}\}")


class Templates:
    """The templates of one folder, each read once.

    `verbatim` keeps a template's leading and trailing whitespace (only the file's
    own final newline is dropped), for prompt sets whose exact bytes matter, such as
    the FAIR authors' strings that start and end with a newline; otherwise the text
    is trimmed.

    >>> Templates(Path("my_prompts")).render("review_math", question="1+1?", rationale="2", gold="2")  # doctest: +SKIP
    """

    __slots__ = ("_texts", "fallback", "folder", "verbatim")

    def __init__(self, folder: Traversable | Path, *, verbatim: bool = False, fallback: Templates | None = None):
        self.folder = folder
        self.verbatim = verbatim
        # Where a template the folder lacks comes from (a user's folder: the built-in set).
        self.fallback = fallback
        self._texts: dict[str, str] = {}

    def own(self, name: str) -> bool:
        """Whether the folder itself holds template `name` (not its fallback)."""
        return name in self._texts or self.folder.joinpath(f"{name}.txt").is_file()

    def has(self, name: str) -> bool:
        """Whether the folder or its fallback holds template `name`."""
        return self.own(name) or (self.fallback is not None and self.fallback.has(name))

    def text(self, name: str) -> str:
        """The text of template `name` (`<folder>/<name>.txt`, else the fallback's); KeyError names it if absent."""
        if name not in self._texts:
            try:
                raw = self.folder.joinpath(f"{name}.txt").read_text(encoding="utf-8")
            except FileNotFoundError:
                if self.fallback is not None and self.fallback.has(name):
                    return self.fallback.text(name)
                raise KeyError(f"no prompt template named {name!r} in {self.folder}") from None
            self._texts[name] = raw.removesuffix("\n") if self.verbatim else raw.strip()
        return self._texts[name]

    def fields(self, name: str) -> set[str]:
        """The field names template `name` expects."""
        return set(_FIELD.findall(self.text(name)))

    def render(self, name: str, **values: str) -> str:
        """Fill template `name` with `values`; every field must be given, and only those.

        A user's template (one overlaying a fallback) may leave given fields out; its unknown
        fields were refused when the run's config was checked (`prompts.sets.check_folder`).
        """
        text = self.text(name)
        wanted = self.fields(name)
        missing = wanted - values.keys()
        extra = values.keys() - wanted if self.fallback is None or not self.own(name) else set()
        if missing or extra:
            raise KeyError(f"template {name!r}: missing fields {sorted(missing)}, unexpected {sorted(extra)}")
        # Substitute in one pass so a value that itself contains `{{x}}` is left alone.
        return _FIELD.sub(lambda m: str(values[m.group(1)]), text)


BUILTIN = Templates(resources.files(__name__))


@cache
def template(name: str) -> str:
    """The text of built-in template `name` (file `prompts/<name>.txt`), whitespace trimmed."""
    return BUILTIN.text(name)


def fields(name: str) -> set[str]:
    """The field names built-in template `name` expects."""
    return BUILTIN.fields(name)


def render(name: str, **values: str) -> str:
    """Fill built-in template `name` with `values`; every field must be given, and only those.

    >>> render("review_math", question="1+1?", rationale="2. [5]", gold="2")  # doctest: +SKIP
    """
    return BUILTIN.render(name, **values)
