"""Generated parts of the README, so they cannot drift from the code and the shipped files.

``python -m modelmgr.cli.readme_gen`` rewrites, in place, every block between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``:

* ``settings``: the configuration table, built from ``Settings``: the variable
  names (our ``MODELMGR_`` name and the ecosystem's aliases), the defaults, and
  the meaning from the comment on (or just above) each field in settings.py;
* ``file PATH``: the file at PATH, verbatim, in a code block (the deploy files).

tests/cli/test_readme.py fails when the README differs from what this would write.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

from pydantic import AliasChoices

from modelmgr.core.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
SETTINGS_SOURCE = PACKAGE / "core" / "settings.py"
BLOCK = re.compile(
    r"(<!-- generated:(?P<name>[^>]*?) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S
)
LANGS = {".conf": "nginx", ".service": "ini"}


def _comments_by_field() -> dict[str, str]:
    """Each Settings field's comment: trailing on its lines, else the comment lines just above."""
    source = SETTINGS_SOURCE.read_text(encoding="utf-8")
    comments: dict[int, str] = {}  # line -> a comment after code
    alone: dict[int, str] = {}  # line -> a comment on a line of its own
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            (alone if tok.line.strip().startswith("#") else comments)[tok.start[0]] = text
    cls = next(
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == Settings.__name__
    )
    found: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        trailing = [comments[i] for i in range(node.lineno, end + 1) if i in comments]
        above: list[str] = []
        line = node.lineno - 1
        while line in alone and not alone[line].startswith("---"):
            above.insert(0, alone[line])
            line -= 1
        found[node.target.id] = " ".join(trailing or above)
    return found


def _names(name: str, field: Any) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"MODELMGR_{name.upper()}"]


def _default(field: Any) -> str:
    value = field.default
    if value is None:
        return "–"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    text = str(value).replace(str(Path.home()), "~")
    if isinstance(value, bool):
        text = text.lower()
    elif isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        text = f"{value} ({value // 1024**2} MiB)" if value < 1024**3 else f"{value} ({value // 1024**3} GiB)"
    return f"`{text}`" if text else '`""`'


def settings_table() -> str:
    comments = _comments_by_field()
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = comments.get(name) or ""
        if not meaning:
            raise ValueError(f"Settings.{name} has no comment in settings.py to document it")
        names = " / ".join(f"`{n}`" for n in _names(name, field))
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| {names} | {_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def file_block(relative: str) -> str:
    path = ROOT / relative
    lang = LANGS.get(path.suffix, "")
    return f"`{relative}`:\n\n```{lang}\n{path.read_text(encoding='utf-8').rstrip()}\n```\n"


def render(readme: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group("name").strip()
        if name == "settings":
            body = settings_table()
        elif name.startswith("file "):
            body = file_block(name.removeprefix("file ").strip())
        else:
            raise ValueError(f"unknown generated block {name!r}")
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, readme)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in sys.argv[1:]:
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
