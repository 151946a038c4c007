"""Algorithms no library provides, written over diffusers / transformers components."""
