"""The shape that keeps adding a paper to few files: every model family and every tab is reachable, each tab
has its tests, the folders say what a file is (`demos/tabs/` a tab and nothing else, `demos/shared/` what
tabs import, `demos/page/` what only the page uses), imports run one way (app → page → tabs → shared →
models) with no circle, limits live in one module, and the README names only files that exist."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import models
from demos import DEMOS
from demos.tabs.compare import all_methods, tasks

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TAB_MODULES = [demo.module for demo in DEMOS]


def modules_in(folder: str) -> list[str]:
    return [f"demos.{folder}.{path.stem}" for path in sorted((ROOT / "demos" / folder).glob("*.py"))
            if path.stem != "__init__"]


SHARED_MODULES, PAGE_MODULES = modules_in("shared"), modules_in("page")


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


def test_the_tabs_folder_holds_the_tabs_and_nothing_else():
    assert set(modules_in("tabs")) == set(TAB_MODULES), "demos/tabs/ and demos.DEMOS differ"
    assert [path.name for path in (ROOT / "demos").glob("*.py")] == ["__init__.py"]  # every file in a folder
    for module in SHARED_MODULES + PAGE_MODULES:
        assert "build_ui" not in top_level_names(module_path(module)), f"{module} builds a tab: move it to tabs/"
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
    if demo.module != "demos.tabs.compare":
        assert "demos.tabs.compare" not in imported_modules(demo.module)


def demos_imports(module: str) -> set[str]:
    """The modules of this repository's `demos` package that `module` imports."""
    inside = set(TAB_MODULES) | set(SHARED_MODULES) | set(PAGE_MODULES)
    return {name for name in imported_modules(module) if name in inside}


@pytest.mark.parametrize("module", SHARED_MODULES)
def test_shared_code_imports_no_tab_and_no_page_module(module):
    assert not demos_imports(module) & (set(TAB_MODULES) | set(PAGE_MODULES))


@pytest.mark.parametrize("module", TAB_MODULES)
def test_tabs_import_no_page_module(module):
    assert not demos_imports(module) & set(PAGE_MODULES)


def test_models_import_nothing_of_the_page():
    for path in (ROOT / "models").rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[0] in ("demos", "app")], path


def test_no_import_circle_in_demos():
    graph = {module: demos_imports(module) for module in TAB_MODULES + SHARED_MODULES + PAGE_MODULES}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    assert [module for module in graph if reaches(module, module, {module})] == []


def test_limits_are_defined_once():
    for path in [*(ROOT / "demos").rglob("*.py"), *(ROOT / "models").glob("*.py"), ROOT / "app.py"]:
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
    assert "models/registry.py" in paths and "demos/tabs/compare.py" in paths
    assert [path for path in paths if not (ROOT / path).exists()] == []


def test_readme_tables_have_no_blank_lines_inside():
    lines = README.splitlines()
    for index in range(2, len(lines)):
        if lines[index].startswith("|"):
            assert not (lines[index - 1] == "" and lines[index - 2].startswith("|")), f"line {index + 1}"


def long_functions(folder: Path, most_lines: int) -> list[str]:
    """Functions in `folder` longer than `most_lines` (a tab's `build_ui` is held to 60: it only wires)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > (60 if node.name == "build_ui" else most_lines):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("folder", ["demos", "models", "scripts"])
def test_functions_are_short_enough_to_read_at_once(folder):
    assert long_functions(ROOT / folder, most_lines=80) == []
