"""Near ties: the decisions that floating point may flip between batch shapes.

A batch runs other matrix shapes than batch 1 (GEMM blocking, padded attention, a prompt split
into a cached prefix and a suffix), so its logits and confidences differ from batch 1's in the
last bits. A token or exit decision may then differ from the batch-1 run only where it was a near
tie: a top-2 logit margin, or a confidence's distance from the threshold, below the bounds here.
The batched engine records every near tie it meets; `engine/correctness.py` re-decodes those rows
on the reference path and explains every difference by one.

Bounds: MEASURED_* below are the largest deviations between the batched engine (batch 3 and 8,
prompts of mixed lengths, shared-prefix cache on) and batch 1, over every method and state
policy, on SmolLM2 and the tiny test models; see benchmarks/near_tie_deviation.py. Each bound is
that largest deviation times a safety factor of 100, rounded up to a power of ten.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGIT_MARGIN_BOUND = 1e-3  # top-2 gap of a token's scores (logits after the repetition penalty)
CONFIDENCE_BOUND = 1e-4  # |confidence - threshold| of an exit decision


@dataclass(frozen=True)
class NearTie:
    """One decision of a row that the batch shape could have flipped.

    token: index of the generated token (0 is the prompt's). kind: 'logit_margin' (the token's
    top-2 gap), 'confidence' (confidence - threshold at the exit `layer`), 'oracle_margin' (the
    top-2 gap of the exit `layer`'s scores, which the oracle compares with the full token).
    """

    token: int
    kind: str
    layer: int
    value: float

    def as_dict(self) -> dict:
        return {"token": self.token, "kind": self.kind, "layer": self.layer, "value": self.value}
