"""The benchmarks: ``python bench/pipeline.py`` (see bench/README.md)."""
