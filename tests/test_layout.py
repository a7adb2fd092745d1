"""The layout's rules, read from the source with `ast` (lazy imports included), so that the architecture stays what
README's layout section says: scripts on top of one library of subsystem packages, imports going one way.

  * no module imports an entry script (scripts import the packages, never each other);
  * no import cycles between modules;
  * a package imports only packages below it in ORDER (and itself);
  * an import inside a function is only for cost (torch, scikit-learn, ...: a module whose import is heavy, or
    acts, as kaggle's does), never to dodge a cycle;
  * what must start without torch does: grid.py plan, analyze.py, models.py, the scripts' argument parsing, the
    cache's worker processes.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from conftest import REPO, digits_args

SCRIPTS = ("train", "evaluate", "analyze", "splits", "fid", "models", "grid", "cache")
# Packages from the bottom up: each may import those before it, never those after.
ORDER = ("common", "metrics", "data", "augment", "nets", "imagecache", "training", "evaluation", "sweep", "analysis",
         "frechet")
# Third-party modules whose import takes a second or more, or acts (kaggle authenticates when imported): importing
# them inside a function, only where they are needed, is allowed.
HEAVY = {"torch", "torchvision", "timm", "accelerate", "sklearn", "iterstrat", "huggingface_hub", "safetensors",
         "albumentations", "matplotlib", "scipy", "statsmodels", "kaggle"}


def module_files() -> dict[str, Path]:
    """Every project module by its dotted name: the scripts and the packages' modules."""
    found = {name: REPO / f"{name}.py" for name in SCRIPTS}
    for package in ORDER:
        for path in sorted((REPO / package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = module_files()


def imported(node: ast.AST, module: str) -> list[str]:
    """The project modules an import statement names (a `from package import name` of a submodule included)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    base = node.module or ""
    if node.level:  # relative imports are not used here; resolve them anyway
        base = ".".join(module.split(".")[:-node.level] + ([base] if base else []))
    names = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    attributes = len(names) < len(node.names)  # names defined in the module itself (or its __init__)
    return names + ([base] if base in MODULES and attributes else [])


@cache
def imports(module: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """(project imports, third-party top names) of a module, each with whether it is lazy (inside a function)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    project, external = [], []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = imported(child, module)
                project.extend((name, inner) for name in names if name != module)
                if not names:
                    top = (child.names[0].name if isinstance(child, ast.Import) else child.module or "").split(".")[0]
                    external.append((top, inner))
            visit(child, inner)

    visit(tree, False)
    return project, external


def package_of(module: str) -> str | None:
    return None if module in SCRIPTS else module.split(".")[0]


@cache
def heavy_at_import(module: str) -> bool:
    """Whether importing the module imports a heavy library (its own top-level imports, followed)."""
    project, external = imports(module)
    return any(name in HEAVY for name, lazy in external if not lazy) or any(
        heavy_at_import(name) for name, lazy in project if not lazy)


def test_no_module_imports_an_entry_script():
    wrong = [f"{module} imports {name}" for module in MODULES for name, _ in imports(module)[0] if name in SCRIPTS]
    assert not wrong, wrong


def test_imports_go_down_the_order_of_packages():
    wrong = []
    for module in MODULES:
        own = package_of(module)
        for name, _ in imports(module)[0]:
            other = package_of(name)
            if own is not None and other is not None and ORDER.index(other) > ORDER.index(own):
                wrong.append(f"{module} ({own}) imports {name} ({other}, above it)")
    assert not wrong, wrong


def test_no_import_cycles():
    graph = {module: sorted({name for name, _ in imports(module)[0]}) for module in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in graph[module]:
            if state.get(name) == 1:
                cycles.append(" -> ".join(path[path.index(name):] + [name]))
            elif name not in state:
                walk(name, [*path, name])
        state[module] = 2

    for module in graph:
        if module not in state:
            walk(module, [module])
    assert not cycles, cycles


def test_lazy_imports_are_only_for_cost():
    wrong = []
    for module in MODULES:
        project, external = imports(module)
        wrong += [f"{module}: lazy import of {name}, which is not heavy" for name, lazy in external
                  if lazy and name not in HEAVY]
        wrong += [f"{module}: lazy import of {name}, whose import is light (import it at the top)"
                  for name, lazy in project if lazy and not heavy_at_import(name)]
    assert not wrong, wrong


def test_the_top_level_holds_only_the_scripts_and_the_packages():
    python = sorted(path.stem for path in REPO.glob("*.py"))
    packages = sorted(path.parent.name for path in REPO.glob("*/__init__.py") if path.parent.name != "tests")
    assert python == sorted(SCRIPTS)
    assert packages == sorted(ORDER)
    for package in ORDER:  # each says what it is for
        assert ast.get_docstring(ast.parse((REPO / package / "__init__.py").read_text())), package


def test_no_package_shares_a_script_name():
    assert not set(ORDER) & set(SCRIPTS)


def loaded_after(code: str, cwd: Path | None = None) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(sorted(sys.modules))"], cwd=cwd or REPO,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return set(eval(result.stdout.strip().splitlines()[-1]))  # noqa: S307 (our own printed list)


TORCH = {"torch", "timm", "torchvision", "albumentations"}


@pytest.mark.parametrize("code", [
    "import analyze, analysis.pipeline, analysis.report",
    "import models, nets.registry; nets.registry.input_size('resnet50', 'aptos')",
    "import imagecache.worker",
    "import train, evaluate, fid, grid, cache, splits; train.build_parser(); evaluate.build_parser(); "
    "fid.build_parser(); grid.build_parser(); cache.build_parser()",
])
def test_what_must_start_without_torch_does(code):
    assert not loaded_after(code) & TORCH


def test_a_finished_run_is_skipped_without_torch(complete_run, split_file):
    """A shell loop over the grid, restarted, passes its finished runs in a fraction of a second each."""
    work, out, _ = complete_run
    code = (f"import train\nassert train.main({digits_args(split_file, out, 3)!r}) == 0")
    assert not loaded_after(code, cwd=work) & TORCH


def test_grid_plan_runs_without_torch(tmp_path, split_file):
    code = (f"import runpy, sys\nsys.argv = ['grid.py', 'plan', '--datasets', 'digits', '--models', 'resnet18', "
            f"'--grid', 'product', '--weights', 'random', '--split-file', {str(split_file)!r}]\n"
            f"try:\n    runpy.run_path({str(REPO / 'grid.py')!r}, run_name='__main__')\nexcept SystemExit as e:\n"
            f"    assert not e.code, e.code")
    assert not loaded_after(code, cwd=tmp_path) & TORCH
    assert (tmp_path / "grid.jsonl").exists()
