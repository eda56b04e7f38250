"""Count the operations that make the host wait for the device, on any device.

A decode step that reads a device value on the host (`.tolist()`, `.item()`, `bool(tensor)`, a
boolean-mask index, `nonzero`, ...) stalls until the device has computed it: on a GPU each read
drains the queue of launched kernels. `torch.cuda.set_sync_debug_mode` reports those reads on a
GPU only; `HostReads` counts the same calls wherever the tensors live (a torch function mode
sees every torch call made inside it, the library's included), so a CPU test can bound them.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

# Calls whose result the host needs before it can go on (their output is a Python value, or a
# tensor whose shape depends on the device's data).
WAITING_CALLS = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "is_nonzero",
    "nonzero", "masked_select", "unique", "unique_consecutive", "equal", "allclose",
})
INDEXING_CALLS = frozenset({"__getitem__", "__setitem__", "index_put", "index_put_"})


def _bool_index(args: tuple) -> bool:
    """A boolean tensor among an indexing call's indices (its shape needs the mask's count)."""
    if len(args) < 2:
        return False
    indices = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class HostReads(TorchFunctionMode):
    """`with HostReads() as reads:` ... then `reads.count`, and `reads.calls` by name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.calls.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in WAITING_CALLS or (name in INDEXING_CALLS and _bool_index(args)):
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))
