"""hoard's benchmarks: each module runs alone (``python -m bench.ingest``) and measures hoard
against an anchor taken in the same run; ``python -m bench.run`` runs them all. See README.md.
"""
