"""Minimal reproductions of what the benchmarks found (run each as a module)."""
