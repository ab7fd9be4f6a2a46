"""The package's layering: no module under ``unlearnkit/`` imports a module above it (issue 19).

Order, low to high: errors/distributed/tasks -> data, models -> stats, training, checkpoints, requests, presets ->
methods -> api -> evaluation -> pipeline, bench, audit, testing -> ledger -> cli -> the package root. A module may
import modules of its own layer or below. Imports inside functions count too (they run upward all the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import unlearnkit

ROOT = Path(unlearnkit.__file__).resolve().parent

LAYERS: list[tuple[str, ...]] = [
    ("errors", "distributed", "tasks"),
    ("data", "models"),
    ("stats", "training", "diffusion", "checkpoints", "requests", "presets", "defaults", "tuned", "spaces"),
    ("methods",),
    ("api",),
    ("evaluation",),
    ("pipeline", "bench", "audit", "testing", "tune", "genrun"),
    ("ledger",),
    ("cli", "cli_ledger", "cli_tune", "__main__"),
]


def layer_of(module: str) -> int:
    """Layer index of a dotted module name under ``unlearnkit`` (the root package is the top)."""
    parts = module.split(".")
    if parts == ["unlearnkit"]:
        return len(LAYERS)
    top = parts[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def imports_of(source: str, path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported unlearnkit module)`` for every import in the file (``from X import y`` gives ``X.y`` when
    that is a module, else ``X``)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "unlearnkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "unlearnkit":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                rel = Path(*sub.split(".")[1:])
                is_mod = (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()
                # The version string of the root package is metadata, not an upward dependency.
                if target == "unlearnkit" and a.name == "__version__":
                    continue
                out.append((node.lineno, sub if is_mod else target))
    return out


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def upward_imports(source_override: dict[str, str] | None = None) -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = module_name(path)
        source = (source_override or {}).get(mod) or path.read_text()
        found = imports_of(source, path, mod)
        for line, target in found:
            if layer_of(target) > layer_of(mod):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target} (layer {layer_of(target)} > "
                           f"{layer_of(mod)})")
    return bad


def test_no_module_imports_a_module_above_it() -> None:
    assert upward_imports() == []


def test_the_walk_catches_an_upward_import() -> None:
    # The import issue 19 removed: training (layer 2) reaching into methods (layer 3) for LayerStats.
    probe = "def f():\n    from .methods.pgu import LayerStats\n    return LayerStats\n"
    bad = upward_imports({"unlearnkit.training": probe})
    assert len(bad) == 1 and "imports unlearnkit.methods.pgu" in bad[0]
    assert layer_of("unlearnkit.stats") < layer_of("unlearnkit.methods.svd")
    assert layer_of("unlearnkit.stats") == layer_of("unlearnkit.training")
