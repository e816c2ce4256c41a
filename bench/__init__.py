"""Benchmarks (`make bench`); each module's `run()` measures one thing and writes bench/results/<name>.json."""
