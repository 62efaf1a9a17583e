"""A user's grader named in the config as "module:function", imported when the config loads."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# The documented signature: (reply, gold, options) -> bool, or a score that passes at `pass_score`.
GraderFunction = Callable[[str, str, Sequence[str]], object]


def import_grader(spec: str) -> GraderFunction:
    """The function `spec` ("package.module:function") names.

    Raises ValueError, one line naming the module or function and what to do, when the
    module cannot be imported, has no such callable, or the callable cannot take
    (reply, gold, options); the config turns it into a `ConfigError` naming the key.

        check = import_grader("mypkg.grade:check")
        check("... The answer is red.", "red", ())  # -> True
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f'grader {spec!r} should read "module:function", e.g. "mypkg.grade:check"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # ModuleNotFoundError's message names the missing module, which may be one the grader imports.
        raise ValueError(
            f"grader {spec!r}: cannot import module {module_name!r} ({exc}); "
            "put it beside the config, install it, or add its folder to PYTHONPATH"
        ) from None
    except Exception as exc:
        # The module's own code failed as it loaded (a syntax error, a file it reads).
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"grader {spec!r}: importing module {module_name!r} raised {type(exc).__name__}: {first}; fix the module"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"grader {spec!r}: module {module_name!r} has no function {name!r}")
    try:
        # Checked now, not at the first answer graded: that may come after the exam, or after teachers were paid.
        inspect.signature(function).bind("reply", "gold", ())
    except TypeError:
        params = ", ".join(inspect.signature(function).parameters)
        raise ValueError(
            f"grader {spec!r}: {name}({params}) cannot be called as {name}(reply, gold, options); "
            "give it those three parameters"
        ) from None
    except ValueError:
        pass  # a callable whose signature Python cannot read (some built-ins): called as it is
    return function


def grader_folder(spec: str) -> Path | None:
    """The folder the module of `spec` (imported already) was imported from: what a child process needs on
    its PYTHONPATH to import it too, whatever its working directory. None for a module that is not a file.
    """
    module_name = spec.partition(":")[0]
    file = getattr(sys.modules.get(module_name), "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    # "pkg.grade" lives in <folder>/pkg/grade.py; a package's own "pkg" in <folder>/pkg/__init__.py.
    return path.parents[module_name.count(".") + (path.name == "__init__.py")]
