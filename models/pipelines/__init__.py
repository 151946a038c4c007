"""Algorithms no library provides, one paper per module, used by the tabs' `run_*` functions."""
