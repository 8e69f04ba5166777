"""Benchmarks: our code against what users would pick instead, in the same run.

``python -m compose.bench`` (``make bench``) builds a replicated cluster on
loopback, runs each benchmark (one module each) and writes
``docs/performance.md``, ``docs/performance.json`` and the plots. Every
benchmark alternates our code and its baseline within one process run and
repeats enough to report a median and a spread: ratios are what we quote,
absolute times are context only (these machines are shared and noisy).
``--quick`` runs tiny counts in seconds, to prove the benchmarks work (CI);
``--only NAME`` reruns some and keeps the others' results; ``--render``
rewrites the Markdown from the JSON. ``compose/bench/repro/`` holds minimal
reproductions of what the benchmarks found (each runnable with ``-m``).
"""

# Run, not imported: each benchmark is a module of its own (``run.BENCHMARKS``
# names them), so importing this package loads nothing heavy.
__all__: list[str] = []
