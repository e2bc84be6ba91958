"""Loads ``runtime/scripts/generate_contract.py`` (a script, not a package) for the sync tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

GENERATOR_PATH = (
    Path(__file__).resolve().parents[2] / "runtime" / "scripts" / "generate_contract.py"
)


def load_generator() -> ModuleType:
    name = "runtime_generate_contract"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def assert_current(path: Path, document: dict[str, object]) -> None:
    """The committed ``path`` is exactly what the generator writes for ``document`` now."""
    generator = load_generator()
    assert path.read_text(encoding="utf-8") == generator.render(document), (
        f"{path.name} is stale: run .venv/bin/python runtime/scripts/generate_contract.py"
    )
