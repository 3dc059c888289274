"""Benchmarks: one command each; `make bench` runs them all, `make bench-quick` a short version."""
