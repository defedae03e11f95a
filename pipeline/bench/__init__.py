"""``make bench``: naive Pillow vs the ImagePipe engine vs pyvips, side by side, in one run.

Run ``python -m pipeline.bench --help``. Each (image, format, approach) runs in a fresh child
process (``pipeline.bench.child``) so peak memory is comparable; the parent interleaves the
approaches per image so they share the machine's noise, then writes ``docs/benchmarks.md``.
"""
