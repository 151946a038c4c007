"""Every message template of the source: what `demos/shared/messages.py` must be able to translate.

A message is the text of a raised error or warning (`UserError(...)`, `gr.Warning(...)`, ...) or of a
`translate(...)`, or a text written in a function whose name says it writes for the reader (`*_for_ui`,
`*summary*`, `*message*`, `*report*`, `*caption*`), including the module constants these name. An f-string's template has `{}` for
each value. Texts without a sentence in them (one word, a symbol, a file name) are not messages, except
what an input check is told its input is called (its `what` argument: "Steps", "a photo to edit"), which
its errors name.

    python scripts/message_templates.py            # templates that messages.zh.json / inputs.zh.json lack
    python scripts/message_templates.py --all      # every template, with where it is written
"""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demos.shared.messages import MIN_LETTERS, template_letters, templates as known_templates  # noqa: E402

SOURCES = ("demos", "models")
MESSAGE_CALLS = {"UserError", "ModelUnavailable", "HubUnreachable", "JobDropped", "Error", "Warning", "Info", "translate"}
WRITERS = re.compile(r"_for_ui$|summary|message|report|caption")


def template_of(node: ast.AST, constants: dict[str, ast.AST]) -> str | None:
    """The template of a string expression (literal, f-string, `+` of them, a module constant), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        return "".join(template_of(part, constants) or "" if isinstance(part, ast.Constant) else "{}"
                       for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = template_of(node.left, constants), template_of(node.right, constants)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.Name) and node.id in constants:
        return template_of(constants[node.id], constants)
    return None


def is_message(template: str) -> bool:
    """A sentence, not a name or a key: letters of its own and at least two words apart."""
    literal = template.replace("{}", "\0")
    return template_letters(template) >= MIN_LETTERS and bool(re.search(r"[A-Za-z]{2,}[^\0]*\s[^\0]*[A-Za-z]{2,}", literal))


def is_input_name(template: str) -> bool:
    """What an input is called: a word at least ("Steps"), not a symbol ("η", "λ_id", "t") or a name
    ("MultiDiffusion")."""
    one_name = not re.search(r"\s", template) and not re.fullmatch(r"[A-Za-z][a-z]{2,}", template)
    return bool(re.search(r"[A-Za-z]{3,}", template.replace("{}", " "))) and "_" not in template and not one_name


def _called_name(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def checks_with_what(trees: list[ast.Module]) -> dict[str, int]:
    """Functions with a `what` parameter (the input checks), and its position."""
    return {function.name: [argument.arg for argument in function.args.args].index("what")
            for tree in trees for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and "what" in [argument.arg for argument in function.args.args]}


def _input_names_in(tree: ast.Module, checks: dict[str, int]) -> list[ast.AST]:
    """The `what` arguments of calls to the input checks."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) in checks:
            found += [keyword.value for keyword in node.keywords if keyword.arg == "what"]
            position = checks[_called_name(node)]
            if len(node.args) > position:
                found.append(node.args[position])
    return found


def _messages_in(tree: ast.Module) -> list[ast.AST]:
    """The string expressions of a module that reach a reader."""
    found: list[ast.AST] = [node.args[0] for node in ast.walk(tree)
                            if isinstance(node, ast.Call) and _called_name(node) in MESSAGE_CALLS and node.args]
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and WRITERS.search(function.name):
            inside = [node for node in ast.walk(function) if isinstance(node, (ast.JoinedStr, ast.Constant, ast.Name))]
            parts = {id(part) for node in inside if isinstance(node, ast.JoinedStr) for part in node.values}
            found += [node for node in inside if id(node) not in parts and not _is_docstring(node, function)]
    return found


def _is_docstring(node: ast.AST, function: ast.AST) -> bool:
    return bool(function.body) and isinstance(function.body[0], ast.Expr) and function.body[0].value is node


def message_templates() -> dict[str, dict[str, list[str]]]:
    """kind ("messages", "inputs") → template → the files that write it."""
    templates: dict[str, dict[str, list[str]]] = {"messages": {}, "inputs": {}}
    paths = [path for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))]
    trees = {path: ast.parse(path.read_text()) for path in paths}
    checks = checks_with_what(list(trees.values()))
    for path, tree in trees.items():
        constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                     for target in node.targets if isinstance(target, ast.Name)}
        found = [("messages", node, is_message) for node in _messages_in(tree)]
        found += [("inputs", node, is_input_name) for node in _input_names_in(tree, checks)]
        for kind, node, wanted in found:
            template = template_of(node, constants)
            if template is not None and wanted(template):
                templates[kind].setdefault(template, []).append(str(path.relative_to(ROOT)))
    return templates


def main() -> None:
    templates = message_templates()
    if "--all" in sys.argv:
        print(json.dumps(templates, ensure_ascii=False, indent=1))
        return
    missing = {kind: {template: "" for template in found if template not in known_templates(kind, "zh")}
               for kind, found in templates.items()}
    print(json.dumps(missing, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
