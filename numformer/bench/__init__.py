"""Benchmarks that ship with the package (so ``numformer bench ...`` works from an
install): the harness (timing, child processes, reports, plots) and numformer's
side of each benchmark. The competitor's side (PyTorch twins) lives in the
repository's ``benchmarks/twins/`` and runs in processes of its own; from an
install without the repository the torch column is absent. The scripts in
``benchmarks/`` call these modules. ``pip install numformer[bench]`` adds
threadpoolctl, which names the BLAS each side uses."""
