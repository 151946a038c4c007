"""One file per tab: `check_inputs → run_<paper>() → result dataclass`, and a `build_ui()` that only wires
widgets. A tab imports `demos.shared`, `models` and nothing of another tab, except those it combines
(`Demo.combines` in `demos/__init__.py`)."""
