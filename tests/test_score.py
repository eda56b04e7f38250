"""The score rule's cell: per-sample lists in sample order, estimates with intervals, same bytes."""

from __future__ import annotations

import math
import re
import statistics as stats
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dynamax_bench.artefacts import artefact, samples_digest
from dynamax_bench.costs.speculation import speculation_summary
from dynamax_bench.files import read_jsonl, write_json, write_jsonl
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.provenance import provenance
from dynamax_bench.reporting import score
from dynamax_bench.reporting.statistics import Groups, IntervalSettings, Ratio, estimates
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=4, num_fewshot=0, fewshot_source=None, options={})
SETTINGS = IntervalSettings(confidence=0.95, resamples=300, seed=3)
# (output, token ids, layers executed per token) per sample; the first four embedded questions
FULL = [(" Paris", [1, 2], [8, 8]), (" Mars", [3], [8]), (" Shakespeare", [4, 5, 6], [8, 8, 8]), (" Rome", [7, 8], [8, 8])]
EARLY = [(" Paris", [1, 2], [8, 4]), (" Venus", [9], [8]), (" Shakespeare", [4, 5, 6], [8, 4, 6]),
         (" a a a a", [5, 5, 5, 5, 5, 5], [8, 4, 4, 4, 4, 4])]


def ledger(records: list[dict], method, table: dict) -> dict:
    """Stands in for costs.ledger.cell_flops's interface: per-sample totals with a 10-FLOP prompt
    forward, 1 FLOP per layer run (it checks that it gets the cell's method and the flops file's table)."""
    assert method == parse_method("ee-calm-copy-t0.5") and table == {"unit": "test table"}
    per_sample = [{"executed": 10 + sum(r["layers_executed"]), "full": 10 + 8 * len(r["layers_executed"]),
                   "decode_executed": sum(r["layers_executed"][1:]), "decode_full": 8 * (len(r["layers_executed"]) - 1)}
                  for r in records]
    executed, full = sum(s["executed"] for s in per_sample), sum(s["full"] for s in per_sample)
    return {"savings": 1 - executed / full, "decode_savings": 0.0, "per_sample": per_sample, "unit": "test"}


def write_cell_inputs(tmp: Path, method: str, samples: list[tuple], task: TaskSpec = TASK,
                      ids: tuple[str, ...] = ("dynamax_tqa_000", "dynamax_tqa_001", "dynamax_tqa_002", "dynamax_tqa_003"),
                      artefacts: dict | None = None) -> Path:
    spec = DecodeSpec(backbone="tiny", family="transformer", task=task.name, method=parse_method(method),
                      exits={"count": 2}, repetition_penalty=1.0, max_new_tokens=8, batch_size=1, prefix_cache=False,
                      dtype="float32", device="cpu", seed=0)
    header = {"decode_spec": spec.to_dict(), "task_spec": task.to_dict(), "exit_positions": [4, 6],
              "agreement": {"rows": 4, "rows_differing": 0}, **({"artefacts": artefacts} if artefacts else {})}
    path = tmp / f"{method}.jsonl"
    write_jsonl(path, [header] + [{"id": i, "prompt": "", "output": o, "token_ids": t, "layers_executed": e,
                                   "stop_reason": "eos"} for i, (o, t, e) in zip(ids, samples)])
    return path


@pytest.fixture
def scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(score, "cell_flops", ledger)
    write_json(tmp_path / "backbone" / "dynamax_backbone.json", {"name": "tiny", "label": "tiny label", "num_layers": 8})
    write_json(tmp_path / "flops.json", {"unit": "test table"})
    full, early = write_cell_inputs(tmp_path, "full", FULL), write_cell_inputs(tmp_path, "ee-calm-copy-t0.5", EARLY)

    def run(out: str, settings: IntervalSettings = SETTINGS) -> dict:
        return score.score_cell(TASK, early, full, tmp_path / "backbone", tmp_path / "flops.json", tmp_path / out,
                                profile="test", evidence=settings)

    return run


def test_cell_keeps_every_quantity_per_sample_in_sample_order(scored) -> None:
    cell = scored("cell.json")
    per_sample = cell["per_sample"]
    assert per_sample["ids"] == ["dynamax_tqa_000", "dynamax_tqa_001", "dynamax_tqa_002", "dynamax_tqa_003"]
    assert per_sample["consistency.output_match"] == [1.0, 0.0, 1.0, 0.0]
    assert per_sample["consistency.token_prefix_agreement"] == [1.0, 0.0, 1.0, 0.0]
    assert per_sample["degeneration.loop_rate"] == [0.0, 0.0, 0.0, 1.0]
    assert per_sample["metrics.em"][:2] == [1.0, 0.0]
    assert per_sample["tokens.generated"] == [2, 1, 3, 6] and per_sample["layers.executed"] == [12, 8, 18, 28]
    assert per_sample["flops.executed"] == [22, 18, 28, 38] and per_sample["flops.full"] == [26, 18, 34, 58]


def test_headline_values_are_the_estimates_and_every_estimate_has_an_interval(scored) -> None:
    cell = scored("cell.json")
    found = cell["intervals"]["estimates"]
    assert cell["intervals"]["kind"] == "percentile bootstrap over groups of samples (scipy.stats.bootstrap)"
    assert (cell["intervals"]["confidence"], cell["intervals"]["resamples"], cell["intervals"]["seed"]) == (0.95, 300, 3)
    assert set(found) == {"metrics.em", "metrics.f1", "consistency.output_match", "consistency.token_prefix_agreement",
                          "degeneration.loop_rate", "flops.total_savings", "flops.decode_savings", "layers.mean_executed",
                          "tokens.exitable_share"}
    for name, entry in found.items():
        assert entry["n"] == 4 and entry["lo"] <= entry["value"] <= entry["hi"], name
    assert cell["consistency"]["output_match"] == found["consistency.output_match"]["value"] == 0.5
    assert cell["degeneration"]["loop_rate"] == 0.25
    assert found["flops.total_savings"]["value"] == pytest.approx(1 - 106 / 136)  # a ratio of sums
    # decode steps alone (each sample's tokens after its first): 4 + 0 + (4 + 6) + 5 * 4 layers, of 8 per step
    assert found["flops.decode_savings"]["value"] == pytest.approx(1 - 34 / 64)
    assert cell["layers"]["mean_executed"] == pytest.approx(66 / 12)
    assert found["tokens.exitable_share"]["value"] == pytest.approx(8 / 12)
    em = cell["per_sample"]["metrics.em"]
    assert found["metrics.em"]["stderr"] == pytest.approx(stats.stdev(em) / math.sqrt(4))
    assert "stderr" not in found["consistency.output_match"]  # lm-eval defines none for it
    assert "per_sample" not in cell["flops"]


def test_same_inputs_give_the_same_bytes_and_the_seed_is_recorded(scored, tmp_path: Path) -> None:
    scored("a.json")
    scored("b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other = scored("c.json", replace(SETTINGS, seed=4))
    assert (tmp_path / "c.json").read_bytes() != (tmp_path / "a.json").read_bytes()
    assert other["provenance"]["spec_hash"] != scored("a.json")["provenance"]["spec_hash"]


def test_a_ledger_with_other_samples_is_refused() -> None:
    records = [{"id": "a", "output": "", "token_ids": [1], "layers_executed": [8]}]
    with pytest.raises(ValueError, match="2 per-sample totals for 1 samples"):
        score.sample_lists(records, records, {}, [{"executed": 1, "full": 1, "decode_executed": 0, "decode_full": 0}] * 2)


def test_consistency_of_outputs_of_different_lengths_divides_by_the_full_models_tokens() -> None:
    """An early-exit output and the full output of different lengths: the share of the full model's
    tokens reproduced before the first divergence (hand-computed), never of the method's own."""
    full = [{"output": " a b c d", "token_ids": [1, 2, 3, 4, 5]}, {"output": " a b", "token_ids": [1, 2]},
            {"output": " x", "token_ids": [7, 8, 9, 10]}, {"output": "", "token_ids": []}]
    early = [{"output": " a b", "token_ids": [1, 2]}, {"output": " a b c d", "token_ids": [1, 2, 3, 4, 5]},
             {"output": " x y", "token_ids": [7, 6, 9]}, {"output": " z", "token_ids": [3]}]
    found = score.consistency(early, full)
    assert found["consistency.token_prefix_agreement"] == [2 / 5, 1.0, 1 / 4, 0.0]
    assert found["consistency.output_match"] == [0.0, 0.0, 0.0, 0.0]
    assert score.prefix_agreement([], []) == 1.0  # both empty: the full output is reproduced
    assert score.prefix_agreement([3], []) == 0.0  # the full model said nothing, the method something


token_lists = st.lists(st.integers(0, 5), max_size=12)


@given(token_lists)
def test_a_method_is_consistent_with_itself(tokens: list[int]) -> None:
    record = {"output": str(tokens), "token_ids": tokens}
    assert score.consistency([record], [record]) == {"consistency.output_match": [1.0],
                                                     "consistency.token_prefix_agreement": [1.0]}


@given(token_lists, token_lists, token_lists)
def test_prefix_agreement_counts_the_common_prefix_over_the_references_length(common: list[int], a: list[int],
                                                                               b: list[int]) -> None:
    assume(not a or not b or a[0] != b[0])  # the two continuations part at once
    reference = common + b
    value = score.prefix_agreement(common + a, reference)
    assert 0.0 <= value <= 1.0
    if reference:
        assert value == len(common) / len(reference)


@given(st.lists(st.integers(0, 2), max_size=16))
def test_an_output_loops_exactly_when_one_4_gram_occurs_three_times(tokens: list[int]) -> None:
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    assert score.loops(tokens) == any(grams.count(gram) >= 3 for gram in grams)


def test_loops_counts_overlapping_and_trailing_grams() -> None:
    assert score.loops([1, 1, 1, 1, 1, 1])  # (1,1,1,1) three times, overlapping
    assert not score.loops([1, 1, 1, 1, 1])  # twice
    assert score.loops([9, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4])  # the third occurrence ends the list
    assert not score.loops([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]) and not score.loops([])
    assert score.loops([1, 2, 1, 2, 1, 2], n=2, min_count=3) and not score.loops([1, 2, 1, 2], n=2, min_count=3)


def test_cell_names_its_backbone_task_method_specs_layers_and_agreement(scored) -> None:
    cell = scored("cell.json")
    assert (cell["backbone"], cell["backbone_label"], cell["task"], cell["method"]) == (
        "tiny", "tiny label", "triviaqa", "ee-calm-copy-t0.5")
    assert cell["spec"]["method"]["threshold"] == 0.5 and cell["task_spec"] == TASK.to_dict()
    assert set(cell["metrics"]) == {"em", "f1"} and cell["metrics"]["em"] == 0.5
    assert cell["degeneration"] == {"loop_rate": 0.25, "ngram": 4, "min_count": 3}
    assert cell["layers"] == {"num_layers": 8, "exit_positions": [4, 6], "mean_executed": pytest.approx(66 / 12),
                              "histogram": {"4": 7, "6": 1, "8": 4}}
    assert cell["agreement"] == {"rows": 4, "rows_differing": 0}
    assert (cell["n_samples"], cell["n_tokens"]) == (4, 12)
    assert cell["consistency"]["token_prefix_agreement"] == 0.5
    made_from = {"decode_spec": cell["spec"], "task_spec": TASK.to_dict(), "evidence": SETTINGS.to_dict()}
    assert cell["provenance"] == provenance("test", made_from)  # what the cell was made from, by name
    # what it was made from, by content: the task's samples (the generations' own artefacts join them)
    assert cell["artefacts"] == {"task": artefact("triviaqa", samples_digest(load_samples(TASK)[1]))}


def test_a_cell_keeps_the_generations_artefacts_beside_its_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(score, "cell_flops", ledger)
    write_json(tmp_path / "backbone" / "dynamax_backbone.json", {"name": "tiny", "label": "tiny label", "num_layers": 8})
    write_json(tmp_path / "flops.json", {"unit": "test table"})
    backbone = {"name": "tiny", "sha256": "ab" * 32}
    full = write_cell_inputs(tmp_path, "full", FULL, artefacts={"backbone": backbone})
    early = write_cell_inputs(tmp_path, "ee-calm-copy-t0.5", EARLY, artefacts={"backbone": backbone})
    cell = score.score_cell(TASK, early, full, tmp_path / "backbone", tmp_path / "flops.json", tmp_path / "cell.json",
                            profile="test", evidence=SETTINGS)
    assert cell["artefacts"] == {"backbone": backbone,
                                 "task": artefact("triviaqa", samples_digest(load_samples(TASK)[1]))}


def test_a_coqa_cell_resamples_the_turns_of_a_story_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its samples' groups are their stories (the task's units), not their ids: 4 turns of one story are one
    group to the bootstrap."""
    monkeypatch.setattr(score, "cell_flops", ledger)
    write_json(tmp_path / "backbone" / "dynamax_backbone.json", {"name": "tiny", "label": "tiny label", "num_layers": 8})
    write_json(tmp_path / "flops.json", {"unit": "test table"})
    coqa = TaskSpec(name="coqa", source={"kind": "embedded"}, limit=4, num_fewshot=0, fewshot_source=None,
                    options={"turns": "all"})
    ids = tuple(sample.id for sample in load_samples(coqa)[1])
    full = write_cell_inputs(tmp_path, "full", FULL, coqa, ids)
    early = write_cell_inputs(tmp_path, "ee-calm-copy-t0.5", EARLY, coqa, ids)
    cell = score.score_cell(coqa, early, full, tmp_path / "backbone", tmp_path / "flops.json", tmp_path / "cell.json",
                            profile="test", evidence=SETTINGS)
    assert cell["per_sample"]["ids"] == list(ids) and cell["per_sample"]["groups"] == ["coqa-00000"] * 4
    assert cell["intervals"]["estimates"]["consistency.output_match"]["groups"] == 1


def test_sample_lists_group_by_the_given_units_else_one_sample_each() -> None:
    records = [{"id": i, "output": o, "token_ids": t, "layers_executed": e} for i, (o, t, e) in zip("abcd", FULL)]
    flops = [{"executed": 1, "full": 1, "decode_executed": 0, "decode_full": 0}] * 4
    assert score.sample_lists(records, records, {}, flops, ["s", "s", "t", "t"])["groups"] == ["s", "s", "t", "t"]
    assert score.sample_lists(records, records, {}, flops)["groups"] == ["a", "b", "c", "d"]


def test_a_lossless_method_that_differs_from_full_is_refused_naming_the_samples() -> None:
    per_sample = {"ids": [f"s{i}" for i in range(13)], "consistency.output_match": [0.0] * 12 + [1.0]}
    with pytest.raises(ValueError) as raised:
        score.check_lossless(parse_method("spec-e2-k3"), per_sample, "gen.jsonl")
    assert str(raised.value) == (
        f"gen.jsonl: spec-e2-k3 reproduces the full model's output by construction, but samples "
        f"{[f's{i}' for i in range(10)]} (12 of 13) differ from full's: a bug of the engine; regenerate both cells "
        "and report it")
    score.check_lossless(parse_method("ee-calm-copy-t0.5"), per_sample, "gen.jsonl")  # lossy: a difference is a result
    score.check_lossless(parse_method("oracle"), {"ids": ["a", "b"], "consistency.output_match": [1.0, 1.0]}, "x")


def test_generations_of_other_samples_are_refused_naming_the_file(tmp_path: Path, scored) -> None:
    scored("cell.json")  # writes the inputs
    full = tmp_path / "full.jsonl"
    original = full.read_text()
    lines = original.splitlines()
    full.write_text("\n".join(lines[:1] + lines[2:] + lines[1:2]) + "\n")  # the full model's samples reordered
    with pytest.raises(ValueError, match=r"ee-calm-copy-t0\.5\.jsonl: sample ids differ"):
        scored("again.json")
    full.write_text(original)
    for name in ("full.jsonl", "ee-calm-copy-t0.5.jsonl"):  # both files agree, but not with the task's samples
        path = tmp_path / name
        path.write_text(path.read_text().replace("dynamax_tqa_000", "other_000"))
    with pytest.raises(ValueError, match=r"ee-calm-copy-t0\.5\.jsonl: sample ids differ"):
        scored("third.json")


# a spec-* method's rounds per sample (drafted, accepted): 2 rounds, 1, 2, and none (it stopped at once)
SPECULATION = [{"drafted": [3, 3], "accepted": [3, 1]}, {"drafted": [3], "accepted": [0]},
               {"drafted": [2, 3], "accepted": [2, 2]}, {"drafted": [], "accepted": []}]


def test_a_spec_cells_acceptance_counts_each_sample_and_resamples_its_groups() -> None:
    records = [{"id": i, "layers_executed": [8] * n, "speculation": s} for i, n, s in zip("abcd", (6, 2, 5, 1), SPECULATION)]
    groups = Groups.of(["s", "s", "t", "u"])
    block = score.speculation_block(records, groups, SETTINGS)
    # tried: the accepted drafts, plus the one rejected in a round that did not accept all it drafted
    assert block["per_sample"] == {"drafted": [6, 3, 5, 0], "accepted": [4, 0, 4, 0], "tried": [5, 1, 5, 0]}
    assert {key: block[key] for key in speculation_summary(records)} == speculation_summary(records)
    expected = estimates({"acceptance_rate": Ratio(np.array([4.0, 0, 4, 0]), np.array([6.0, 3, 5, 0])),
                          "per_draft_acceptance": Ratio(np.array([4.0, 0, 4, 0]), np.array([5.0, 1, 5, 0]))},
                         groups, SETTINGS)
    assert block["intervals"] == {name: found.to_dict() for name, found in expected.items()}
    assert block["intervals"]["acceptance_rate"]["value"] == pytest.approx(8 / 14)
    assert block["intervals"]["per_draft_acceptance"]["groups"] == 3
    # two samples that drafted are the least a rate can be resampled over
    assert set(score.speculation_block(records[1:3], Groups.of(["s", "t"]), SETTINGS)["intervals"]) == set(expected)
    assert score.speculation_block(records[2:], Groups.of(["t", "u"]), SETTINGS)["intervals"] == {}


def test_a_spec_cell_carries_its_acceptance_and_must_equal_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(score, "cell_flops", lambda records, method, table: ledger(records, parse_method("ee-calm-copy-t0.5"), table))
    write_json(tmp_path / "backbone" / "dynamax_backbone.json", {"name": "tiny", "label": "tiny label", "num_layers": 8})
    write_json(tmp_path / "flops.json", {"unit": "test table"})
    full = write_cell_inputs(tmp_path, "full", FULL)
    spec = write_cell_inputs(tmp_path, "spec-e4-k3", FULL)
    header, *records = read_jsonl(spec)
    records = [{**record, "speculation": rounds} for record, rounds in zip(records, SPECULATION)]
    write_jsonl(spec, [header, *records])

    def cell_of(generations: Path, out: str) -> dict:
        return score.score_cell(TASK, generations, full, tmp_path / "backbone", tmp_path / "flops.json", tmp_path / out,
                                profile="test", evidence=SETTINGS)

    cell = cell_of(spec, "spec.json")
    assert cell["speculation"] == score.speculation_block(records, Groups.of(cell["per_sample"]["groups"]), SETTINGS)
    assert cell["speculation"]["passes"] == 5 and cell_of(full, "full.json")["speculation"] is None
    records[1] = {**records[1], "output": " Venus", "token_ids": [9]}
    write_jsonl(spec, [header, *records])
    with pytest.raises(ValueError, match=re.escape(f"{spec}: spec-e4-k3 reproduces the full model's output")):
        cell_of(spec, "changed.json")
