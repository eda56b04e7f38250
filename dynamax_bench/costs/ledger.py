"""The cost ledger: the FLOPs a method ran for each sample, against the full model's for the same
tokens, from the sample's prompt length, its per-token exit trace and the flops rule's table.

Batch-1 accounting, the paper's: every sample is counted as if it ran alone. The batched engine's
shared-prefix cache computes a task's common prompt prefix once per batch; the ledger still counts
the whole prompt for every sample (`prompt_tokens` of its generation record), the work the method
needs for that sample on its own.

What one sample runs (`sample_work`), for a prompt of T tokens and n generated tokens:
  prompt  every kept layer over the T tokens (L layers; L - N under prune<N), the final norm and
          LM head at the last position (that gives the first token: no exit decision), and a
          stateful exit method's pass over the prompt at every exit position (its state).
  decode  each later token k = 1..n-1, exiting after e_k layers, with t = T + k - 1 positions
          cached: e_k layer steps at context t, the head, the exit method's decisions (at every
          exit position <= e_k; a stateful method at every exit position, as it also steps on the
          exited hidden state after e_k), and the state policy's fill of the L - e_k skipped layers.
  spec    self-speculative decoding (spec-e<E>-k<K>) counts its rounds instead of an exit trace
          (the generation record's `speculation`: per verification pass, d tokens drafted and a
          accepted), from t positions cached: d + 1 decode steps of layers 1..E at contexts t..t+d
          (each draft and the last draft's own step), d heads (the drafts), layers E+1..L over the
          m = d + 1 positions (a Transformer layer's pass over m new positions after t, `layer_verify`,
          a decode step where m = 1; a Mamba-2 layer's m recurrent steps, each a decode step), and m
          heads; the next round starts from t + a + 1. Rejected drafts are counted: they ran.
The full model runs L layers over the prompt and at every step, and one head per token. The
oracle is the ceiling: its exit trace, without decisions or fills. Layer costs at a length come
from the table's `per_length` models (exact fvcore counts, see costs/lengths.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dynamax_bench.classifiers.registry import exit_method
from dynamax_bench.costs.lengths import LengthModel
from dynamax_bench.spec import MethodSpec

FULL = MethodSpec(name="full", kind="full")
ACCOUNTING = ("batch 1: each sample's whole prompt is counted for it alone (a prefix that samples share and "
              "the batched engine computes once per batch is counted for every sample)")


@dataclass
class SampleWork:
    """How often each block ran for one sample: (block, length) -> times; length is None for
    blocks whose cost does not depend on it (head, decision, fill)."""

    prompt: Counter = field(default_factory=Counter)
    decode: Counter = field(default_factory=Counter)

    def totals(self) -> Counter:
        """Runs per block over both phases, lengths merged."""
        merged: Counter = Counter()
        for (block, _), times in (self.prompt + self.decode).items():
            merged[block] += times
        return merged


def prompt_tokens(record: dict) -> int:
    """A generation record's prompt length in tokens (written by the generate rule)."""
    if "prompt_tokens" not in record:
        raise ValueError(f"generation record {record.get('id', '?')!r} has no 'prompt_tokens': it predates the "
                         "complete cost ledger; rerun the generate rule for this cell")
    return record["prompt_tokens"]


def speculation_of(record: dict) -> dict[str, list[int]]:
    """A `spec-*` generation record's rounds ({"drafted": [...], "accepted": [...]})."""
    if not record.get("speculation"):
        raise ValueError(f"generation record {record.get('id', '?')!r} of a spec-* method has no 'speculation' "
                         "rounds; rerun the generate rule for this cell")
    return record["speculation"]


def _speculative_decode(work: SampleWork, num_prompt: int, method: MethodSpec, table: dict,
                        rounds: dict[str, list[int]]) -> None:
    """The decode work of self-speculative rounds (module docstring, `spec`)."""
    lower, num_layers = method.draft_layer, table["num_layers"]
    upper = num_layers - lower
    recurrent = table["family"] == "mamba2"
    cached = num_prompt
    for drafted, accepted in zip(rounds["drafted"], rounds["accepted"]):
        positions = drafted + 1
        for step in range(positions):
            work.decode[("layer_decode", cached + step)] += lower + (upper if recurrent else 0)
        if not recurrent:  # one position (no draft left in the budget) is a plain decode step
            block = ("layer_verify", (cached, positions)) if positions > 1 else ("layer_decode", cached)
            work.decode[block] += upper
        work.decode[("head", None)] += drafted + positions
        cached += accepted + 1


def sample_work(num_prompt: int, layers_executed: list[int], method: MethodSpec, table: dict,
                rounds: dict[str, list[int]] | None = None) -> SampleWork:
    """The blocks `method` ran for one sample (see the module docstring); `rounds`: a spec-* method's."""
    num_layers, exits = table["num_layers"], table["exit_positions"]
    work = SampleWork()
    kept = num_layers - method.prune if method.kind == "prune" else num_layers
    work.prompt[("layer_prefill", num_prompt)] += kept
    work.prompt[("head", None)] += 1
    if method.kind == "spec":
        _speculative_decode(work, num_prompt, method, table, rounds)
        return work
    stateful = method.kind == "ee" and exit_method(method.exit_kind).stateful
    if stateful and exit_method(method.exit_kind).prompt_state:
        work.prompt[("classifier_prefill", num_prompt)] += len(exits)
    for k, executed in enumerate(layers_executed[1:], start=1):
        layers = num_layers if method.kind == "full" else executed
        work.decode[("layer_decode", num_prompt + k - 1)] += layers
        work.decode[("head", None)] += 1
        if method.kind == "ee":
            work.decode[("decision", None)] += len(exits) if stateful else sum(1 for e in exits if e <= executed)
            work.decode[("fill", None)] += num_layers - executed
    return work


@dataclass(frozen=True)
class Prices:
    """What each block costs under one method: length models for the layer and prompt passes,
    one figure for the head, a decision and the fill of one skipped layer."""

    models: dict[str, LengthModel]
    costs: dict[str, int]

    @classmethod
    def of(cls, table: dict, method: MethodSpec) -> Prices:
        blocks = table["blocks"]
        if "per_length" not in blocks["layer_prefill"]:
            raise ValueError("the FLOPs table has no per-length counts (it predates the complete cost ledger); "
                             "rerun the flops rule for this backbone")
        models = {name: LengthModel.from_dict(blocks[name]["per_length"]) for name in ("layer_prefill", "layer_decode")}
        if method.kind == "spec" and table["family"] != "mamba2":
            if "layer_verify" not in blocks:
                raise ValueError("the FLOPs table has no `layer_verify` count (a layer over several new positions, "
                                 "which self-speculative verification runs); rerun the flops rule for this backbone")
            models["layer_verify"] = LengthModel.from_dict(blocks["layer_verify"]["per_length"])
        costs = {"head": blocks["head"]["flops"]}
        if method.kind == "ee":
            step = table["exit_methods"][method.exit_kind]
            costs["decision"] = step["flops"]
            costs["fill"] = blocks[f"fill_{method.policy}"]["flops"]
            if exit_method(method.exit_kind).stateful and exit_method(method.exit_kind).prompt_state:
                models["classifier_prefill"] = LengthModel.from_dict(step["prefill"])
        return cls(models, costs)

    def __call__(self, work: Counter) -> int:
        """FLOPs of one phase's work."""
        return sum(times * (self.models[block](length) if block in self.models else self.costs[block])
                   for (block, length), times in work.items())

    @property
    def exact(self) -> bool:
        """Every length model reproduced the fvcore counts it was checked against."""
        return all(model.exact for model in self.models.values())


def _savings(executed: int, full: int) -> float | None:
    return 1.0 - executed / full if full else None


def cell_flops(records: list[dict], method: MethodSpec, table: dict) -> dict[str, Any]:
    """The cell's ledger: totals, savings over everything (`savings`) and over the decode steps alone
    (`decode_savings`, where an exit method acts: what claims compare), and every sample's executed and
    full FLOPs in order, over both phases and over the decode steps."""
    if not records or not any(r["layers_executed"] for r in records):
        raise ValueError(f"{method.name}: no generated tokens to count")
    if method.runs_as_full:  # a consistency target no threshold could certify: no exit, no classifier
        method = FULL
    prices, full_prices = Prices.of(table, method), Prices.of(table, FULL)
    per_sample, lengths = [], []
    phases = {phase: {"executed": 0, "full": 0, "tokens": 0} for phase in ("prompt", "decode")}
    for record in records:
        num_prompt, exits = prompt_tokens(record), record["layers_executed"]
        ran = sample_work(num_prompt, exits, method, table, speculation_of(record) if method.kind == "spec" else None)
        ref = sample_work(num_prompt, exits, FULL, table)
        sample = {"executed": 0, "full": 0}
        for phase in phases:
            executed, full = prices(getattr(ran, phase)), full_prices(getattr(ref, phase))
            phases[phase]["executed"] += executed
            phases[phase]["full"] += full
            sample["executed"] += executed
            sample["full"] += full
            if phase == "decode":
                sample["decode_executed"], sample["decode_full"] = executed, full
        phases["prompt"]["tokens"] += num_prompt
        phases["decode"]["tokens"] += max(0, len(exits) - 1)
        per_sample.append(sample)
        lengths.append(num_prompt)
    executed = sum(s["executed"] for s in per_sample)
    full = sum(s["full"] for s in per_sample)
    decode = phases["decode"]
    return {
        "unit": table["unit"],
        "accounting": ACCOUNTING,
        "exact": prices.exact,  # every length model reproduced its check counts
        "executed": executed,
        "full": full,
        "savings": _savings(executed, full),
        "decode_savings": _savings(decode["executed"], decode["full"]),
        "prompt": phases["prompt"],
        "decode": decode,
        "per_token_executed": decode["executed"] / decode["tokens"] if decode["tokens"] else None,
        "per_token_full": decode["full"] / decode["tokens"] if decode["tokens"] else None,
        "context_length": table["context_length"],
        "prompt_tokens": lengths,
        "per_sample": per_sample,
    }
