# Benchmarks (python -m bench)
