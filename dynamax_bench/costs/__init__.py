"""Costs: FLOPs per block (`flops`), the per-sample FLOPs ledger, wall-clock latency (`latency`)."""
