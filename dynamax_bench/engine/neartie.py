"""Near ties: the decisions that floating point may flip between batch shapes.

A batch runs other matrix shapes than batch 1 (GEMM blocking, padded attention, a prompt split
into a cached prefix and a suffix), so its logits and confidences differ from batch 1's in the
last bits. A token or exit decision may then differ from the batch-1 run only where it was a near
tie: a top-2 logit margin, or a confidence's distance from the threshold, below the bounds here,
both relative to their own scale (a row's largest |score|, the larger of confidence and threshold),
because a model's deviation scales with its activations (SmolLM2's logits run to 30, a random tiny
model's to 0.1).
The batched engine records every near tie it meets; `engine/correctness.py` re-decodes those rows
on the reference path and explains every difference by one.

Bounds: 2e-4 of the row's largest |score| for the top-2 logit margin and 7e-4 (relative) for a
confidence's distance from the threshold, in float32; another dtype scales both by its machine
epsilon over float32's (not measured). At bfloat16 that gives 13.1 and 45.9, above any margin, so
every decision is a near tie (8 of 8 rows re-decoded at batch 16 on an H100,
benchmarks/results/gpu_paper_shapes.json): decoding whose outputs are kept refuses the batched
engine outside float32 (`spec.batched_dtype_problem`); the latency rule's batched throughput and
the benchmarks, which keep only rates, still run it there. Each sits about 11.5x above the largest deviation measured
(benchmarks/near_tie_deviation.py, committed as benchmarks/results/near_tie_deviation.json: 8
prompts x 12 tokens, batch 3 without and batch 8 with the prefix cache against batch 1, every
method and policy, CPU float32, one torch thread, under the earlier bounds 1e-3 and 2e-3): the
largest relative score deviation was 1.7e-5 on SmolLM2 (6.5e-7 and 2.1e-6 on the tiny Mistral and
Mamba-2), the largest relative confidence deviation 6.1e-5 (max-softmax on SmolLM2; calm, ffn,
mamba and saturation at most 4.0e-6); no row differed from batch 1. Every near-tie row is
re-decoded at batch 1, so a wider band costs time (under the earlier bounds, 136 s of a 211 s
job: the oracle on 53 TruthfulQA questions, default profile) and buys nothing past the deviations
that occur; a deviation past a bound would be an
unexplained difference, which stops the job. Every agreement record names the bounds it used.
What is checked on every test run: tests/test_batched_engine.py finds no difference outside a
recorded near tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# float32 bounds; another dtype scales them by its machine epsilon over float32's (not measured here).
LOGIT_MARGIN_BOUND = 2e-4  # top-2 gap of a token's scores (logits after the repetition penalty) / max |score|
CONFIDENCE_BOUND = 7e-4  # |confidence - threshold| / max(|confidence|, |threshold|) (a max-softmax
# confidence can be 1e-5, a near-uniform head, and its error scales with it)
PROBABILITY_FLOOR = 1e-5  # relative, for a probability's rounding next to 1 (see Bounds.confidence_ties)


def ieee_float32(model_device: torch.device, dtype: torch.dtype) -> None:
    """The float32 bounds hold for IEEE float32 arithmetic. On CUDA, PyTorch lets cuDNN convolutions
    (transformers' Mamba-2 fallback path) run in TF32 by default, and matmuls where a caller allows it,
    which would move results by about 1e-3 relative: both are turned off for a float32 engine. (The
    fused mamba-ssm kernels choose their own precision inside Triton; the GPU benchmark checks them.)"""
    if model_device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@dataclass(frozen=True)
class Bounds:
    logit_margin: float
    confidence: float
    probability_floor: float = PROBABILITY_FLOOR

    @classmethod
    def for_dtype(cls, dtype: torch.dtype) -> Bounds:
        scale = torch.finfo(dtype).eps / torch.finfo(torch.float32).eps
        return cls(logit_margin=LOGIT_MARGIN_BOUND * scale, confidence=CONFIDENCE_BOUND * scale,
                   probability_floor=PROBABILITY_FLOOR * scale)

    @staticmethod
    def margins(scores: torch.Tensor) -> torch.Tensor:
        """(B,) top-2 gap of each row of scores (B, vocab) over the row's largest |score|."""
        top2 = scores.topk(2, dim=-1).values
        scale = scores.abs().amax(-1).clamp_min(torch.finfo(scores.dtype).tiny)
        return (top2[:, 0] - top2[:, 1]) / scale

    def confidence_ties(self, confidence: torch.Tensor, threshold: float, probability: bool = False) -> torch.Tensor:
        """(B,) bool: decisions within the bound of the threshold, relative to the larger of the two.

        A probability (a softmax output: `ExitRule.probability`) moves between batch shapes by its
        logits' deviation times p(1 - p), so near 1 it moves with 1 - p, not with p: its scale is the
        distance of the two values' nearer end (0 or 1), plus a floor for float32's rounding, relative
        to the larger value like any rounding (so about 1e-5 next to 1, about 170 units in the last
        place). Otherwise every saturated max-softmax token (p = 1.0) would be a near tie of a
        threshold of 0.999 (re-decoded at batch 1 for nothing)."""
        if not probability:
            high = torch.maximum(confidence.abs(), torch.full_like(confidence, abs(threshold)))
            return (confidence - threshold).abs() <= self.confidence * high
        return (confidence - threshold).abs() <= self.probability_band(confidence, threshold)

    def probability_band(self, confidence: torch.Tensor, threshold: float) -> torch.Tensor:
        """(B,) the half-width of a probability's near-tie band around `threshold` (`confidence_ties`)."""
        high = torch.maximum(confidence.abs(), torch.full_like(confidence, abs(threshold)))
        nearer_end = torch.minimum(high, 1.0 - torch.clamp(confidence, max=threshold))
        return self.confidence * nearer_end + self.probability_floor * high


@dataclass(frozen=True)
class NearTie:
    """One decision of a row that the batch shape could have flipped.

    token: index of the generated token (0 is the prompt's). kind and value: 'logit_margin' (the
    token's relative top-2 gap, read at `layer`), 'confidence' (confidence - threshold at the exit
    `layer`), 'oracle_margin' (the relative top-2 gap of the exit `layer`'s scores, which the
    oracle compares with the full token).
    """

    token: int
    kind: str
    layer: int
    value: float

    def as_dict(self) -> dict:
        return {"token": self.token, "kind": self.kind, "layer": self.layer, "value": self.value}
