"""Algorithm code that no library provides, used by the tabs' `run_*` functions."""
