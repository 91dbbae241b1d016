"""Benchmarks that ship with the package (so ``numformer bench ...`` works from an
install); the scripts in the repository's benchmarks/ folder call them."""
