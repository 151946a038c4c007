"""Algorithms no library provides, one paper per module."""
