"""The CEL engine (common-expression-language's compiled module), loaded on its own.

Importing the ``cel`` package also imports its interactive command-line tool (typer,
prompt_toolkit, pygments, rich: about 160 ms) which Proctor never uses. The compiled module
is loaded directly and registered under its own name, so a later ``import cel`` elsewhere
finds it and does not initialise it twice. Should the package's layout ever differ, the
plain import is used instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load() -> ModuleType:
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("cel")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for directory in locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(directory) / f"cel{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(path))
                module_spec = importlib.util.spec_from_file_location("cel.cel", path, loader=loader)
                if module_spec is None:
                    break
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                sys.modules["cel.cel"] = module
                return module
    import cel  # the package as it is, command-line tool and all

    return cel


cel = _load()
compile = cel.compile
Context = cel.Context
