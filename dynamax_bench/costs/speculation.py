"""Self-speculative decoding (`spec-e<E>-k<K>`): its acceptance statistics, and the speedup they predict.

Acceptance. Per verification pass (a round) the generation record holds d tokens drafted and a
accepted. The acceptance rate is accepted / drafted, as LayerSkip reports it. The per-draft acceptance
alpha is accepted / (accepted + rounds that rejected a draft): the chance that a draft is accepted given
that the drafts before it were, the parameter of the i.i.d. model of speculative decoding (Leviathan
et al. 2023): a round of K drafts then keeps (1 - alpha^(K+1)) / (1 - alpha) tokens in expectation.
The first draft of a round is accepted exactly when the exit at layer E agrees with the full model
there, so alpha is the exit's agreement rate on the generated text, which the oracle store measures on
the corpus (Table 2's positive rate at top-k 1).

Cost of a round of K drafts at draft layer E of L (engine/speculative.py):
  K draft steps      E layer steps and the head, each;
  one lower step     E layer steps, the last draft's own;
  verification       L - E layers over the K + 1 positions (a Transformer layer's one pass; a Mamba-2
                     layer's K + 1 recurrent steps) and the head over the K + 1 positions;
against the full model's decode step: L layer steps and the head. Predicted speedup = expected tokens
per round x the full step's cost / the round's cost.

Two units for the costs:
- FLOPs (the flops rule's table): a pass over m positions costs m times one position's products, so a
  round computes K + 1 positions through every layer (plus K draft heads) to keep at most K + 1
  tokens: self-speculation never saves FLOPs. It can only save time, where a layer's pass over m
  positions costs less than m steps: at batch 1 a decode step reads every weight for one position
  (bound by memory bandwidth on a CPU and on a GPU), and a pass over m positions reads them once.
- seconds, measured at batch 1 on the machine that runs the method (costs/latency.py `block_seconds`,
  in the latency rule's file of the method).

Torch-free: the score and paper_tables rules read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dynamax_bench.costs.lengths import LengthModel

GRID_DRAFTS = tuple(range(1, 9))  # K of the payoff grid (Table 10c)


def rounds_of(records: Iterable[dict]) -> list[tuple[int, int]]:
    """(drafted, accepted) of every round of every record."""
    return [pair for record in records for pair in zip(record["speculation"]["drafted"],
                                                         record["speculation"]["accepted"])]


def per_draft_acceptance(rounds: Sequence[tuple[int, int]]) -> float | None:
    """alpha: accepted drafts over drafts tried (a draft after a rejected one is never tried)."""
    accepted = sum(a for _, a in rounds)
    tried = accepted + sum(1 for d, a in rounds if a < d)
    return accepted / tried if tried else None


def speculation_summary(records: Sequence[dict]) -> dict:
    """Acceptance statistics of a spec-* method's generation records (module docstring)."""
    rounds = rounds_of(records)
    drafted, accepted = sum(d for d, _ in rounds), sum(a for _, a in rounds)
    decode_tokens = sum(max(0, len(r["layers_executed"]) - 1) for r in records)
    depth = max((d for d, _ in rounds), default=0)
    by_position = {}
    for i in range(1, depth + 1):  # draft i is tried when the i - 1 before it were accepted
        tried = sum(1 for d, a in rounds if d >= i and a >= i - 1)
        by_position[str(i)] = {"tried": tried, "accepted": sum(1 for _, a in rounds if a >= i),
                               "rate": sum(1 for _, a in rounds if a >= i) / tried if tried else None}
    return {
        "passes": len(rounds),
        "drafted": drafted,
        "accepted": accepted,
        "acceptance_rate": accepted / drafted if drafted else None,
        "per_draft_acceptance": per_draft_acceptance(rounds),
        "decode_tokens": decode_tokens,
        "tokens_per_pass": decode_tokens / len(rounds) if rounds else None,
        "by_position": by_position,
    }


def expected_tokens(alpha: float, drafts: int) -> float:
    """Tokens a round of `drafts` keeps in expectation when each draft is accepted with probability alpha
    given the ones before it: 1 + alpha + ... + alpha^K."""
    return float(sum(alpha**i for i in range(drafts + 1)))


@dataclass(frozen=True)
class BlockCosts:
    """What the blocks of a decode step cost in one unit (seconds or FLOPs).

    step: one layer's decode step (the full model's); lower: one layer's step inside a draft (on
    Mamba-2 with the state snapshot the rollback keeps); over[m]: one layer over m new positions as
    the verification runs it; head: the final norm and LM head at one position; head_over[m]: at m
    positions at once."""

    unit: str
    num_layers: int
    step: float
    lower: float
    over: dict[int, float]
    head: float
    head_over: dict[int, float]

    def full_step(self) -> float:
        return self.num_layers * self.step + self.head

    def round(self, draft_layer: int, drafts: int) -> float:
        """A round of `drafts` drafts from layer `draft_layer` (module docstring)."""
        m = drafts + 1
        if m not in self.over or m not in self.head_over:
            raise ValueError(f"no {self.unit} cost of a pass over {m} positions (have {sorted(self.over)})")
        verify = (self.num_layers - draft_layer) * self.over[m] + self.head_over[m]
        return drafts * (draft_layer * self.lower + self.head) + draft_layer * self.lower + verify

    def speedup(self, alpha: float, draft_layer: int, drafts: int) -> float:
        """The i.i.d. model's speedup of spec-e<draft_layer>-k<drafts> over the full model's decode steps."""
        return self.speedup_at(expected_tokens(alpha, drafts), draft_layer, drafts)

    def speedup_at(self, tokens_per_pass: float, draft_layer: int, drafts: int) -> float:
        """The speedup of rounds that keep `tokens_per_pass` tokens each (observed, or the model's)."""
        return tokens_per_pass * self.full_step() / self.round(draft_layer, drafts)

    def to_dict(self) -> dict:
        return {"unit": self.unit, "num_layers": self.num_layers, "step": self.step, "lower": self.lower,
                "over": {str(m): v for m, v in self.over.items()}, "head": self.head,
                "head_over": {str(m): v for m, v in self.head_over.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> BlockCosts:
        return cls(unit=data["unit"], num_layers=data["num_layers"], step=data["step"], lower=data["lower"],
                   over={int(m): v for m, v in data["over"].items()}, head=data["head"],
                   head_over={int(m): v for m, v in data["head_over"].items()})

    @classmethod
    def from_flops(cls, table: dict, positions: Iterable[int] = range(1, GRID_DRAFTS[-1] + 2)) -> BlockCosts:
        """FLOPs at the table's context length (compute-bound: a pass over m positions costs m steps'
        products; on a Transformer its attention grows with m too)."""
        blocks, context = table["blocks"], table["context_length"]
        step = LengthModel.from_dict(blocks["layer_decode"]["per_length"])(context)
        if table["family"] == "mamba2":
            over = {m: float(m * step) for m in positions}
        else:
            verify = LengthModel.from_dict(blocks["layer_verify"]["per_length"])
            over = {m: float(verify((context, m)) if m > 1 else step) for m in positions}
        head = float(blocks["head"]["flops"])
        return cls(unit="flops", num_layers=table["num_layers"], step=float(step), lower=float(step), over=over,
                   head=head, head_over={m: m * head for m in positions})


def break_even(costs: BlockCosts, draft_layer: int, drafts: int) -> float | None:
    """The per-draft acceptance at which spec-e<draft_layer>-k<drafts> costs what the full model does (the
    i.i.d. model's speedup is 1); None where even accepting every draft does not pay."""
    need = costs.round(draft_layer, drafts) / costs.full_step()
    if expected_tokens(1.0, drafts) < need:
        return None
    low, high = 0.0, 1.0
    for _ in range(60):  # bisection: expected_tokens grows with alpha
        middle = (low + high) / 2
        low, high = (middle, high) if expected_tokens(middle, drafts) < need else (low, middle)
    return high


def agreement_by_exit(classifier: dict) -> dict[int, float]:
    """Per exit layer, the share of held-out corpus tokens whose greedy token there is the full model's
    (top-1 agreement: the positive rate at top-k 1 on the test split), from a classifier JSON of the
    backbone; empty where the probe's k candidates leave out k = 1."""
    sweep = classifier.get("top_k_selection", {}).get("sweep", {})
    if "1" in sweep:
        exits = sweep["1"]["test"]["exits"]
    elif classifier.get("training", {}).get("top_k") == 1:
        exits = classifier["test"]["exits"]
    else:
        return {}
    return {int(layer): entry["positive_rate"] for layer, entry in exits.items()}


def payoff_grid(agreement: dict[int, float], costs: Sequence[BlockCosts],
                drafts: Sequence[int] = GRID_DRAFTS) -> list[dict]:
    """Predicted speedup of spec-e<E>-k<K> for every exit E with a measured agreement and every K, under
    each cost unit, and the agreement each would need to break even: which configurations would pay."""
    rows = []
    for layer, alpha in sorted(agreement.items()):
        for k in drafts:
            row = {"exit layer": layer, "agreement": alpha, "K": k, "tokens per pass": expected_tokens(alpha, k)}
            for cost in costs:
                row[f"speedup ({cost.unit})"] = cost.speedup(alpha, layer, k)
                row[f"break-even agreement ({cost.unit})"] = break_even(cost, layer, k)
            rows.append(row)
    return rows
