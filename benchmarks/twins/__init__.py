"""The competitor's side of the benchmarks: PyTorch twins of numformer's models and
ops, and their timing code. Not shipped with numformer (``pip install numformer``
carries no PyTorch code); run by the harness (``numformer.bench.harness.run_child``)
as ``python -m benchmarks.twins.NAME`` in a process of its own, which never loads
numformer's kernels or runtime settings. Each child records that
(``runtime_record``) in its JSON, and the parent refuses the timings otherwise.
"""
