"""Template rendering: templates/<service>/ with exactly the values a deploy passes (no host data);
the compiled templates kept by Jinja's bytecode cache between runs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
FILES = ROOT / "files"  # static files uploaded as they are (pyinfra's convention)


# How the templates are compiled: part of every cached file's name, so that another Jinja or
# other options never reuse code compiled for these (Jinja checks only the template's text).
OPTIONS = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True, "autoescape": False}


class _BytecodeCache(FileSystemBytecodeCache):
    """Jinja's cache, where a file that cannot be read or written only means a compile."""

    def __init__(self, directory: str | None = None):
        kind = sha256_text(f"{jinja2.__version__} {sorted(OPTIONS.items())}")[:12]
        super().__init__(directory, pattern=f"__llmlab_{kind}_%s.cache")

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable or cut short: compiled again
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    try:
        return _BytecodeCache()
    except (OSError, RuntimeError):  # no private folder to be had: compile each run
        return None


@lru_cache(maxsize=1)
def _jinja() -> Environment:
    return Environment(
        loader=FileSystemLoader([str(TEMPLATES), str(TEMPLATES / "common")]),
        undefined=StrictUndefined,
        **OPTIONS,
        # Each template compiled once per version of its text, not on every run (about 20 ms of a
        # converged run): Jinja's own cache, in its private folder under the temporary directory.
        bytecode_cache=_bytecode_cache(),
    )


def render(template: str, **values: Any) -> str:
    """Render templates/<template> with exactly the values given."""
    return _jinja().get_template(template).render(**values)


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
