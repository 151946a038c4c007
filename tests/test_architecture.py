"""The shape that keeps adding a paper to three files: every model family and every tab is reachable,
each tab has its tests, tabs do not import each other (or the Compare tab), shared code names no model
family, limits live in one module, and the README names only files that exist and renders its tables."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import models
from demos import DEMOS
from demos.compare import all_methods, tasks

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TAB_MODULES = [demo.module for demo in DEMOS]
SHARED_DEMO_MODULES = ["demos.boxes", "demos.comparison", "demos.generation", "demos.i18n", "demos.inputs", "demos.lessons", "demos.limits",
                       "demos.masks", "demos.ui"]


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def imported_modules(module: str) -> set[str]:
    """Every module `module` imports, at the top or inside a function."""
    tree = ast.parse(module_path(module).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)} | {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_model_family_is_in_the_registry():
    families = [path for path in sorted((ROOT / "models").glob("*.py")) if "SPECS" in top_level_names(path)]
    assert len(families) >= 9
    for path in families:
        specs = importlib.import_module(f"models.{path.stem}").SPECS
        assert specs, f"{path.name} defines an empty SPECS"
        for spec in specs:
            assert models.REGISTRY.get(spec.name) is spec, f"{spec.name} of {path.name} is not reachable"


def test_every_tab_module_is_in_the_tab_list_and_builds_a_ui():
    defining_build_ui = {f"demos.{path.stem}" for path in (ROOT / "demos").glob("*.py")
                         if "build_ui" in top_level_names(path)}
    assert defining_build_ui == set(TAB_MODULES), "a demos/*.py with build_ui() is missing from demos.DEMOS"
    assert len(TAB_MODULES) == len(set(TAB_MODULES)) and len({demo.title for demo in DEMOS}) == len(DEMOS)
    for module in TAB_MODULES:
        assert callable(importlib.import_module(module).build_ui)


@pytest.mark.parametrize("module", TAB_MODULES)
def test_every_tab_has_its_own_test_file(module):
    assert (ROOT / "tests" / f"test_{module.split('.')[-1]}.py").is_file()


@pytest.mark.parametrize("demo", DEMOS, ids=lambda demo: demo.module)
def test_tabs_import_no_other_tab_except_the_ones_they_combine(demo):
    others = set(TAB_MODULES) - {demo.module} - set(demo.combines)
    assert not imported_modules(demo.module) & others
    if demo.module != "demos.compare":
        assert "demos.compare" not in imported_modules(demo.module)


@pytest.mark.parametrize("module", SHARED_DEMO_MODULES)
def test_shared_demo_code_imports_no_tab_and_no_model_family(module):
    families = {f"models.{spec.loader.__module__.split('.')[-1]}" for spec in models.REGISTRY.values()}
    assert not imported_modules(module) & (set(TAB_MODULES) | families)


def test_limits_are_defined_once():
    for path in [*(ROOT / "demos").glob("*.py"), *(ROOT / "models").glob("*.py"), ROOT / "app.py"]:
        names = top_level_names(path)
        assert not {"MAX_STEPS", "MAX_IMAGES_PER_RUN", "ASSETS"} & names or path.name == "__init__.py", path
        reads_a_limit = re.search(r"(environ\.get|env_int|env_float)\(\"PP_MAX_(?!LOADED)", path.read_text())
        assert not reads_a_limit or path.name == "limits.py", path


def test_compare_collects_each_tabs_declared_methods():
    declared = [method for module in TAB_MODULES
                for method in getattr(importlib.import_module(module), "COMPARE_METHODS", [])]
    assert [m.name for m in all_methods()] == [m.name for m in declared]
    assert len({m.name for m in declared}) == len(declared)
    assert {m.task.name for m in declared} == set(tasks()) >= {
        "image + labels → scores", "image + question → answer", "text + layout → image"}
    for method in declared:
        assert set(method.parameters) <= set(method.task.inputs) | set(method.run.__code__.co_varnames)


def readme_paths() -> list[str]:
    """Paths the README names: in backticks, and in the file tree of "How it is built"."""
    named = re.findall(r"`((?:app|demos|models|tests|assets|bench|scripts)\b[\w./-]*)`", README)
    tree = README.split("## How it is built", 1)[1].split("```")[1]
    folder = ""
    for line in tree.splitlines():
        names = re.split(r"\s{2,}", line.strip())[0].split(", ") if line.strip() else []
        if line.startswith(" "):
            named += [folder + name for name in names]
        elif names:
            folder = names[0] if names[0].endswith("/") else ""
            named += names
    return [path for path in named if ("/" in path or path.endswith(".py")) and not set("<*") & set(path)]


def test_readme_names_only_files_that_exist():
    paths = readme_paths()
    assert "models/registry.py" in paths and "demos/compare.py" in paths
    assert [path for path in paths if not (ROOT / path).exists()] == []


def test_readme_tables_have_no_blank_lines_inside():
    lines = README.splitlines()
    for index in range(2, len(lines)):
        if lines[index].startswith("|"):
            assert not (lines[index - 1] == "" and lines[index - 2].startswith("|")), f"line {index + 1}"
