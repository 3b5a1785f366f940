"""Benchmarks against the tools people would use instead (issue 8).

`uv run python -m bench` runs every comparison side by side in one run (see ``__main__``). Each
section module (startup, runtime_overhead, local_throughput, renderer, logs_tail, memory) also
runs on its own (`uv run python bench/startup.py`, ...) and exposes ``run()`` returning its raw
results, which ``__main__`` summarises; ``routing.py`` is a standalone script.
"""
