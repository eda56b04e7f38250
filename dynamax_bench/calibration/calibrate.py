"""The `calibrate` rule: each exit method's thresholds, chosen on the calibration split for each target.

Targets (`calibration` section of the profile):
- consistency c (c0.95: at least 95% of outputs equal to the full model's): Learn-Then-Test down the
  threshold grid (ltt.py); the lowest threshold certified at epsilon, or none (the method then runs as
  the full model);
- prune<N> (p6): the decode savings static pruning of N layers gets on the same split (its layers
  dropped over every decode step's layers and head); the highest threshold whose decode savings reach
  them, first estimated on the full trajectories' confidences (record.simulated_exits), then checked by
  a real decode and lowered while it falls short, at most `max_decodes` times.

A threshold's decode runs only on the samples whose full trajectory reaches it somewhere (record.py);
every other sample keeps the full model's output, exactly. Consistency is the score rule's: the output
text equals the full model's; a unit (a CoQA story, a TriviaQA question) fails when any of its samples
differs. Savings are the cost ledger's decode savings, the exit method's decisions and fills included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dynamax_bench.calibration.ltt import p_value, units_needed
from dynamax_bench.calibration.record import record_trajectories, simulated_exits
from dynamax_bench.classifiers.registry import base_kind
from dynamax_bench.costs.ledger import cell_flops
from dynamax_bench.engine.promptstore import PromptStore
from dynamax_bench.files import read_json, write_json
from dynamax_bench.generation.generate import trace_record
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, MethodSpec, TaskSpec, ee_name, format_threshold, parse_method

log = logging.getLogger(__name__)
P_VALUE = "exact binomial tail of the failing units (Learn-Then-Test, fixed-sequence down the grid)"
SIMULATION_STEPS = 200  # thresholds 0, 0.005, ..., 1 on which prune targets are first estimated


@dataclass(frozen=True)
class CalibrationSettings:
    """What one calibrate job reads of the profile: kinds and policies to calibrate, the consistency
    targets with their epsilon and grid, the prune levels to match."""

    kinds: list[str]
    policies: list[str]
    consistency: list[float]
    epsilon: float
    grid: list[float]
    prune: list[int]
    max_decodes: int = 2

    def __post_init__(self) -> None:
        if list(self.grid) != sorted(self.grid, reverse=True) or len(set(self.grid)) != len(self.grid):
            raise ValueError(f"calibration.grid {self.grid}: list the thresholds from the highest down, each once")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationSettings:
        return cls(**data)


def spec_at(base: DecodeSpec, kind: str, policy: str, threshold: float) -> DecodeSpec:
    """The decode spec of one exit method at one threshold."""
    return replace(base, method=parse_method(ee_name(kind, policy, threshold)))


def decode_savings(records: list[dict], method: MethodSpec, table: dict) -> float | None:
    return cell_flops(records, method, table)["decode_savings"]


def failing_units(records: Sequence[dict], full: Sequence[dict], units: Sequence[str]) -> tuple[int, int, float]:
    """(units with any output differing from full's, units, share of samples equal to full's)."""
    same = [r["output"] == f["output"] for r, f in zip(records, full)]
    failing = {unit for unit, ok in zip(units, same) if not ok}
    return len(failing), len(set(units)), float(np.mean(same))


Key = tuple[str, str, float]  # (exit kind, policy, threshold)
BLOCK = 3  # grid thresholds per kind asked for in one round: at most BLOCK - 1 decoded past a sequence's end
# A decode step's cost in prompt tokens, for grouping decodes into calls (an estimate, not a measurement: a
# step moves one token per row through every layer, at a small fraction of a prompt pass's efficiency per token)
DECODE_COST = 4


@dataclass
class GridPath:
    """One kind and policy's way down the grid: the targets still tested, and what was found."""

    kind: str
    policy: str
    alive: dict[str, float]  # target key -> delta, while its sequence goes on
    chosen: dict[str, float | None]
    tested: dict[str, int]
    steps: list[dict]
    next: int = 0  # index of the next grid threshold to test


@dataclass
class Match:
    """One kind and policy's search for a pruning level's decode savings."""

    kind: str
    policy: str
    target: float
    simulated: dict[float, float]
    entry: dict
    threshold: float | None = None  # decoded next
    need: float = 0.0


class Job:
    """One calibrate job: a backbone and task, every calibrated kind and policy.

    Decodes are requested as (kind, policy, threshold) and made together: one `decode_each` call per round
    over the samples any of them needs, so the strategies of a call share each batch's prompt pass (every
    stateful kind builds its state from it, engine/prefill.py). A round asks each kind for its next BLOCK
    grid thresholds and each pruning level's next candidate.
    """

    def __init__(self, base: DecodeSpec, task_spec: TaskSpec, backbone_dir: str | Path, classifiers: Path | None,
                 table: dict, settings: CalibrationSettings) -> None:
        from dynamax_bench.generation.decoder import Decoder

        self.base, self.settings, self.table, self.classifiers = base, settings, table, classifiers
        self.full_decoder = Decoder.load(replace(base, method=parse_method("full")), backbone_dir)
        self.backbone = self.full_decoder.backbone
        self.task, self.samples = load_samples(task_spec)
        self.units = [s.unit for s in self.samples]
        self.loaded: dict = {}
        self.exit_positions = self.full_decoder.exit_positions
        self.decoded: dict[Key, tuple[list[dict], int]] = {}
        self.simulated: dict[tuple, float | None] = {}  # (kind, policy, exit traces) -> estimated decode savings
        self.store = PromptStore()  # batch-1 prompt forwards: the trajectories' serve every round's checks

    def decoder(self, kind: str, policy: str, threshold: float):
        from dynamax_bench.generation.decoder import Decoder

        return Decoder.for_backbone(spec_at(self.base, kind, policy, threshold), self.backbone, self.classifiers,
                                    self.loaded)

    def record(self) -> None:
        """The full trajectories and every kind's confidences along them (one batch-1 pass)."""
        rules = {kind: self.decoder(kind, self.settings.policies[0], 1.0).strategy.rule for kind in self.settings.kinds}
        engine = self.full_decoder.generator(self.task.stop_strings, self.base.max_new_tokens)
        generations, self.confidences = record_trajectories(engine, [s.prompt for s in self.samples], rules,
                                                            self.settings.policies[0], self.store)
        self.full = [{"id": s.id, **trace_record(s.prompt, g)} for s, g in zip(self.samples, generations)]
        # float32, as the engine compares a confidence with its threshold (rules.decide)
        self.largest = {kind: np.array([m.max() if m.size else -np.inf for m in mats], dtype=np.float32)
                        for kind, mats in self.confidences.items()}

    def reaches(self, kind: str, threshold: float) -> np.ndarray:
        """The samples whose full trajectory reaches the threshold somewhere: only they can exit at it."""
        return self.largest[kind] >= np.float32(threshold)

    def decode(self, requests: Sequence[Key]) -> None:
        """Decode every request not decoded yet; each request's records: decoded where its trajectory reaches
        the threshold, else the full model's. The requests are grouped into calls (`group_calls`)."""
        from dynamax_bench.generation.decoder import decode_each

        todo = [key for key in dict.fromkeys(requests) if key not in self.decoded]
        rows = {key: set(np.flatnonzero(self.reaches(key[0], key[2])).tolist()) for key in todo}
        for members, union in self.group_calls(todo, rows):
            order = sorted(union)
            decoders = [self.decoder(*key) for key in members]
            decoded = [generations for generations, _ in
                       decode_each(decoders, [self.samples[i].prompt for i in order], self.task.stop_strings,
                                   disable_tqdm=True, store=self.store)] if order else [[] for _ in members]
            for key, generations in zip(members, decoded):
                records = list(self.full)
                for i, generation in zip(order, generations):
                    if i in rows[key]:
                        records[i] = {"id": self.samples[i].id, **trace_record(self.samples[i].prompt, generation)}
                self.decoded[key] = (records, len(rows[key]))
            log.info("decoded %d (kind, policy, threshold) in one call on %d samples", len(members), len(order))

    def group_calls(self, requests: list[Key], rows: dict[Key, set[int]]) -> list[tuple[list[Key], set[int]]]:
        """Requests grouped into decode calls, greedily, the largest row sets first: a request joins the call
        whose cost it raises least, or starts its own. A call costs one prompt pass per row (every exit
        method keeps every layer, so the batched engine runs one pass for all the strategies of a call; a
        stateful classifier's own pass over the prompt is not counted), and one decode per row for each
        strategy; a request decoded in a call also decodes the call's other rows (their output is the full
        model's, unused)."""
        prompt = {i: r["prompt_tokens"] for i, r in enumerate(self.full)}
        steps = {i: DECODE_COST * max(0, len(r["layers_executed"]) - 1) for i, r in enumerate(self.full)}

        def cost(members: list[Key], union: set[int]) -> float:
            return sum(prompt[i] for i in union) + len(members) * sum(steps[i] for i in union)

        calls: list[tuple[list[Key], set[int]]] = []
        for key in sorted(requests, key=lambda k: -len(rows[k])):
            best, added = None, cost([key], rows[key])
            for index, (members, union) in enumerate(calls):
                raised = cost(members + [key], union | rows[key]) - cost(members, union)
                if raised < added:
                    best, added = index, raised
            if best is None:
                calls.append(([key], set(rows[key])))
            else:
                calls[best] = (calls[best][0] + [key], calls[best][1] | rows[key])
        return calls

    def step(self, path: GridPath) -> None:
        """Test the path's next grid threshold (decoded already) for every target still alive."""
        threshold = self.settings.grid[path.next]
        records, decoded = self.decoded[(path.kind, path.policy, threshold)]
        failing, units, same = failing_units(records, self.full, self.units)
        method = parse_method(ee_name(path.kind, path.policy, threshold))
        p_values = {key: p_value(failing, units, delta) for key, delta in path.alive.items()}
        path.steps.append({"threshold": threshold, "decoded_samples": decoded, "failing_units": failing,
                           "output_match": same, "decode_savings": decode_savings(records, method, self.table),
                           "p_values": p_values})
        for key, p in p_values.items():
            path.tested[key] += 1
            if p <= self.settings.epsilon:
                path.chosen[key] = threshold
            else:
                del path.alive[key]
        path.next += 1
        log.info("%s-%s t=%s: %d samples decoded, %d of %d units differ", path.kind, path.policy, threshold, decoded,
                 failing, units)

    def targets(self, path: GridPath) -> dict[str, dict]:
        units, settings = len(set(self.units)), self.settings
        out = {}
        for c in settings.consistency:
            key = format_threshold(c)
            certified = path.chosen[key] is not None
            needed = units_needed(1.0 - c, settings.epsilon)
            reason = ("" if certified else
                      f"{units} units cannot certify {c:g} at epsilon {settings.epsilon:g} (at least {needed} needed)"
                      if units < needed else
                      f"the first threshold of the grid ({settings.grid[0]:g}) fails it: p = "
                      f"{path.steps[0]['p_values'][key]:.3g} > {settings.epsilon:g}")
            out[key] = {"threshold": path.chosen[key], "certified": certified, "thresholds_tested": path.tested[key],
                        "reason": reason}
        return out

    def prune_savings(self, level: int) -> float:
        """Static pruning's decode savings on the split: every token's layers are the first L - N."""
        kept = self.backbone.num_layers - level
        records = [{**r, "layers_executed": [kept] * len(r["layers_executed"])} for r in self.full]
        return decode_savings(records, parse_method(f"prune{level}"), self.table)

    def simulated_savings(self, kind: str, policy: str, threshold: float) -> float | None:
        """The decode savings of the exits a threshold gives on the full trajectories (an estimate). Priced
        once per distinct set of traces: neighbouring thresholds of the 201 often give the same exits, and
        every pruning level searches the same thresholds."""
        traces = tuple(tuple(simulated_exits(m, self.exit_positions, self.backbone.num_layers, threshold))
                       for m in self.confidences[kind])
        key = (kind, policy, traces)
        if key not in self.simulated:
            records = [{**r, "layers_executed": list(t)} for r, t in zip(self.full, traces)]
            self.simulated[key] = decode_savings(records, parse_method(ee_name(kind, policy, threshold)), self.table)
        return self.simulated[key]

    def match(self, kind: str, policy: str, target: float) -> Match:
        """A pruning level's search: the highest threshold whose estimated decode savings reach `target` first."""
        grid = [round(float(t), 4) for t in np.linspace(1.0, 0.0, SIMULATION_STEPS + 1)]
        simulated = {t: self.simulated_savings(kind, policy, t) or 0.0 for t in grid}
        found = Match(kind, policy, target, simulated, {"target_savings": target, "decodes": []}, need=target)
        candidates = [t for t in grid if simulated[t] >= target]
        if candidates:
            found.threshold = candidates[0]
        else:
            best = max(grid, key=lambda t: simulated[t])
            found.entry.update(threshold=best, reached=False,
                               reason=f"at most {simulated[best]:.3f} decode savings at any threshold (estimated), "
                                      f"short of {target:.3f}")
        return found

    def check(self, found: Match) -> None:
        """Read the decoded savings at the match's threshold; lower it while they fall short (`max_decodes`)."""
        threshold = found.threshold
        records, decoded = self.decoded[(found.kind, found.policy, threshold)]
        real = decode_savings(records, parse_method(ee_name(found.kind, found.policy, threshold)), self.table) or 0.0
        found.entry["decodes"].append({"threshold": threshold, "estimated": found.simulated[threshold],
                                       "decode_savings": real, "decoded_samples": decoded})
        lower = []
        if real < found.target:
            found.need += found.target - real  # the estimate was optimistic by this much: ask it for more
            lower = [t for t, s in found.simulated.items() if t < threshold and s >= found.need]
        if real >= found.target or not lower or len(found.entry["decodes"]) >= self.settings.max_decodes:
            reached = real >= found.target
            found.entry.update(threshold=threshold, reached=reached,
                               reason="" if reached else f"the decoded savings stayed below {found.target:.3f}")
            found.threshold = None
        else:
            found.threshold = max(lower)

    def run(self) -> dict:
        started = time.perf_counter()
        self.record()
        seconds = {"trajectories": round(time.perf_counter() - started, 1)}
        started = time.perf_counter()
        levels = {str(level): self.prune_savings(level) for level in self.settings.prune}
        paths, matches = [], {}
        for kind in self.settings.kinds:
            for policy in self.settings.policies:
                alive = {format_threshold(c): 1.0 - c for c in self.settings.consistency}
                paths.append(GridPath(kind, policy, alive, dict.fromkeys(alive), dict.fromkeys(alive, 0), []))
                if base_kind(kind) == kind:
                    for level, savings in levels.items():
                        matches[(kind, policy, level)] = self.match(kind, policy, savings)
        rounds = 0
        while True:
            going = [p for p in paths if p.alive and p.next < len(self.settings.grid)]
            pending = [m for m in matches.values() if m.threshold is not None]
            if not going and not pending:
                break
            requests = [(p.kind, p.policy, t) for p in going for t in self.settings.grid[p.next:p.next + BLOCK]]
            self.decode(requests + [(m.kind, m.policy, m.threshold) for m in pending])
            rounds += 1
            for path in going:
                for _ in range(BLOCK):
                    if path.alive and path.next < len(self.settings.grid):
                        self.step(path)
            for found in pending:
                self.check(found)
        seconds["decodes"] = round(time.perf_counter() - started, 1)
        log.info("calibration: %d rounds, %d decodes, seconds %s", rounds, len(self.decoded), seconds)
        methods: dict[str, dict] = {}
        for path in paths:
            prune = {level: matches[(path.kind, path.policy, level)].entry for level in levels
                     if (path.kind, path.policy, level) in matches}
            methods.setdefault(path.kind, {})[path.policy] = {"steps": path.steps, "consistency": self.targets(path),
                                                              "prune": prune}
        return {
            "backbone": self.base.backbone, "task": self.task.name, "samples": len(self.samples),
            "units": len(set(self.units)), "epsilon": self.settings.epsilon, "p_value": P_VALUE,
            "grid": list(self.settings.grid), "exit_positions": self.exit_positions,
            "full": {"decode_tokens": sum(max(0, len(r["layers_executed"]) - 1) for r in self.full)},
            "prune_savings": levels, "methods": methods, "decodes": len(self.decoded), "rounds": rounds,
            "seconds": seconds,
        }


def calibrate_task(base: DecodeSpec, task_spec: TaskSpec, backbone_dir: str | Path, classifiers: Path | None,
                   flops: str | Path, settings: CalibrationSettings, out_path: str | Path) -> dict:
    """Calibrate every kind and policy of the settings on one backbone and task; write the JSON."""
    result = Job(base, task_spec, backbone_dir, classifiers, read_json(flops), settings).run()
    result["settings"] = {"base_spec": base.to_dict(), "task_spec": task_spec.to_dict(),
                          "calibration": settings.__dict__}
    write_json(out_path, result)
    return result


def resolve(method: MethodSpec, calibration: dict) -> MethodSpec:
    """A calibrated method with the threshold its calibration chose (`certified`: the target was met;
    an uncertified consistency target has no threshold and runs as the full model)."""
    if not method.calibrated:
        return method
    entry = calibration["methods"][method.exit_kind][method.policy]
    if method.target == "consistency":
        chosen = entry["consistency"][format_threshold(method.target_value)]
        return replace(method, threshold=chosen["threshold"], certified=chosen["certified"])
    chosen = entry["prune"][str(int(method.target_value))]
    return replace(method, threshold=chosen["threshold"], certified=chosen["reached"])


def resolve_specs(specs: Sequence[DecodeSpec], calibration_path: str | Path) -> list[DecodeSpec]:
    """Decode specs of calibrated rows with their thresholds, from their calibrate job's file."""
    calibration = read_json(calibration_path)
    for spec in specs:
        if (spec.backbone, spec.task) != (calibration["backbone"], calibration["task"]):
            raise ValueError(f"{calibration_path} calibrates {calibration['backbone']}/{calibration['task']}, not "
                             f"{spec.backbone}/{spec.task}; rerun the calibrate rule for this backbone and task")
    return [replace(spec, method=resolve(spec.method, calibration)) for spec in specs]
