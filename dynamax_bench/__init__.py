"""dynamax-bench: early-exit inference for Transformer and Mamba-2 LMs, benchmarked end to end."""

__version__ = "0.1.0"
