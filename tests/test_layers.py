"""The house's layers point one way: management/tasks -> runner, agent, cli, api, dashboard -> services/selectors
-> engine -> storage; permissions -> models. Read from the source (imports inside functions too), so
a lazy import cannot hide an edge that points up."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "volumes"

# What each layer must never import (the layers above it).
ABOVE = {
    # An agent worker holds no database and no storage credentials: it reaches the server over HTTP only.
    "agent": {"models", "permissions", "services", "selectors", "storage", "tasks", "api", "dashboard", "management",
              "cli"},
    "cli": {"tasks", "runner", "dashboard", "management"},
    "runner": {"api", "dashboard", "management", "tasks", "agent", "cli"},
    "api": {"dashboard", "management", "tasks", "runner", "agent"},
    "dashboard": {"management", "tasks", "runner", "agent", "cli"},
    "services": {"tasks", "runner", "api", "dashboard", "management", "agent", "cli"},
    "selectors": {"tasks", "runner", "api", "dashboard", "management", "agent", "cli"},
    "engine": {"services", "selectors", "tasks", "runner", "api", "dashboard", "management", "agent", "cli"},
    "storage": {"engine", "services", "selectors", "tasks", "runner", "api", "dashboard", "management", "agent",
                "cli"},
    "permissions": {"services", "selectors", "engine", "storage", "tasks", "runner", "api", "dashboard", "cli"},
    "models": {"services", "selectors", "permissions", "engine", "storage", "tasks", "runner", "api", "dashboard",
               "cli"},
}


def _imports(path: Path) -> set[str]:
    """The volumes.<top> names a module imports, resolved from relative imports."""
    package = path.relative_to(ROOT.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if node.module else [target + [alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        found |= {parts[1] for parts in names if len(parts) > 1 and parts[0] == "volumes"}
    return found


def _modules(layer: str) -> list[Path]:
    folder = ROOT / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [ROOT / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_no_layer_imports_a_layer_above_it(layer):
    wrong = {
        f"{path.relative_to(ROOT.parent)} imports volumes.{name}"
        for path in _modules(layer) for name in _imports(path) & ABOVE[layer]
    }
    assert not wrong, sorted(wrong)


def test_the_celery_tasks_import_the_runner_and_services_not_the_other_way():
    assert "runner" in _imports(ROOT / "tasks.py")
    assert not any("tasks" in _imports(path) for path in _modules("services") + _modules("runner"))


def test_a_volume_is_found_by_name_in_one_place():
    """Names are unique without case: `Volume.objects.named` is the one lookup, so no caller can forget the
    case rule or the workspace."""
    lookups = [f"{path.relative_to(ROOT.parent)}:{number}"
               for path in sorted(ROOT.rglob("*.py")) if path.name != "models.py"
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if "Volume.objects" in line and "name__iexact" in line]
    assert not lookups, lookups


def test_a_module_over_500_lines_says_why_at_its_top():
    files = [*ROOT.rglob("*.py"), *(ROOT.parent / "static").rglob("*.js")]
    unexplained = [str(path.relative_to(ROOT.parent)) for path in sorted(files)
                   if "vendor" not in path.parts and len(path.read_text().splitlines()) > 500
                   and "over 500 lines on purpose" not in "\n".join(path.read_text().splitlines()[:25])]
    assert not unexplained, unexplained
