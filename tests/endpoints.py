"""The running app's named API endpoints and a valid request for each, read from the app itself.

The fuzzing test and the load bench both start here, so a tab added later is covered by them
without editing either.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradio_client import Client, handle_file

# Matched against a widget's label in the config: its English text, or its translation key (demos/page/i18n.py
# turns "Max new tokens" into a reference to the key "pp_max_new_tokens").
AMOUNT_OF_WORK = re.compile(r"steps|step.budget|candidates|images|iterations|new.tokens|beams|variations|frames",
                            re.IGNORECASE)
SPACING_OF_WORK = re.compile(r"every", re.IGNORECASE)  # "Sample every N steps": the least work at its maximum
GOOD_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"  # has a face, for face swap


@dataclass
class Endpoint:
    """One named API route: a valid request, and (for fuzzing) bad values for its inputs."""

    name: str
    input_ids: list[int]
    good: list[Any]
    bad: list[tuple[int, str, Any]] = field(default_factory=list)  # (input index, description, value)

    def args_with(self, index: int, value: Any) -> list[Any]:
        args = list(self.good)
        args[index] = value
        return args


def good_value(component: dict, parameter: dict) -> Any:
    """A value the widget itself could send. Sliders that set how much work a request does (steps,
    candidates, images ...) sit where it is least (their minimum, or the maximum of "every N steps"),
    so heavy tabs stay cheap on CPU."""
    kind, props = component["type"], component.get("props", {})
    if kind in ("image", "file"):
        image = handle_file(str(GOOD_IMAGE))
        return [image] if props.get("file_count") == "multiple" else image
    if parameter.get("parameter_has_default"):
        default = parameter["parameter_default"]
        label = str(props.get("label", ""))
        if kind == "slider" and AMOUNT_OF_WORK.search(label):
            return props.get("maximum" if SPACING_OF_WORK.search(label) else "minimum", default)
        return default
    if kind in ("dropdown", "radio"):
        choices = props.get("choices") or [[None, None]]
        return choices[0][1]
    if kind == "textbox":
        return "a cat"
    return None


def named_endpoints(client: Client) -> list[Endpoint]:
    """Every public named endpoint of the running app, from its own config and API info."""
    components = {component["id"]: component for component in client.config["components"]}
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    endpoints = []
    for dependency in client.config["dependencies"]:
        name = f"/{dependency.get('api_name')}"
        if name not in api:
            continue
        parameters = api[name]["parameters"]
        assert len(dependency["inputs"]) == len(parameters), name
        good = [good_value(components[input_id], parameter)
                for input_id, parameter in zip(dependency["inputs"], parameters)]
        endpoints.append(Endpoint(name, list(dependency["inputs"]), good))
    return endpoints
