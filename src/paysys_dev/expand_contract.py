"""The rule for migrations beside running pods (docs/operations.md, "Migrations"):
expand, then contract, across releases. A migration's upgrade may add (tables,
columns, indexes, constraints, functions); what removes or renames something old
replicas still use (a table, a column) may run only in a release after the one that
stopped using it, and says so: the module sets `CONTRACT_STEP = "<why it is safe>"`.

`destructive(source)` finds such operations in a migration's `upgrade()`: Alembic's
`op.drop_table`, `op.drop_column`, a rename (`op.rename_table`, `alter_column` with
`new_column_name`), and the same in raw SQL given to `op.execute`. Read with `ast`, not
run: a check of the text as written, which `make test` runs on every migration."""

from __future__ import annotations

import ast
import re
from pathlib import Path

DESTRUCTIVE_OPS = {"drop_table", "drop_column", "rename_table"}
DESTRUCTIVE_SQL = re.compile(
    r"\bDROP\s+(TABLE|COLUMN|SCHEMA)\b|\bRENAME\s+(TO|COLUMN)\b|\bTRUNCATE\b", re.IGNORECASE
)


def _upgrade(tree: ast.Module) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "upgrade":
            return node
    return None


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def destructive(source: str) -> list[str]:
    """The destructive operations of a migration's upgrade(), as `line: what`."""
    tree = ast.parse(source)
    upgrade = _upgrade(tree)
    if upgrade is None:
        return []
    found = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        if name in DESTRUCTIVE_OPS:
            found.append(f"{node.lineno}: op.{name}")
        elif name == "alter_column" and any(k.arg == "new_column_name" for k in node.keywords):
            found.append(f"{node.lineno}: op.alter_column(new_column_name=...)")
        elif name == "execute" and any(DESTRUCTIVE_SQL.search(s) for s in _strings(node)):
            found.append(f"{node.lineno}: op.execute(<destructive SQL>)")
    return found


def marked_contract(source: str) -> bool:
    """Whether the migration says it is a contract step (and why)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CONTRACT_STEP" for t in node.targets
        ):
            return isinstance(node.value, ast.Constant) and bool(node.value.value)
    return False


def violations(migrations: Path) -> dict[str, list[str]]:
    """Per migration file that breaks the rule: its destructive operations."""
    out = {}
    for path in sorted(migrations.glob("*/versions/*.py")):
        source = path.read_text()
        found = destructive(source)
        if found and not marked_contract(source):
            out[str(path.relative_to(migrations))] = found
    return out
