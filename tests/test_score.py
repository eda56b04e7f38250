"""The score rule's cell: per-sample lists in sample order, estimates with intervals, same bytes."""

from __future__ import annotations

import math
import statistics as stats
from dataclasses import replace
from pathlib import Path

import pytest

from dynamax_bench.files import write_json, write_jsonl
from dynamax_bench.reporting import score
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=4, num_fewshot=0, fewshot_source=None, options={})
SETTINGS = IntervalSettings(confidence=0.95, resamples=300, seed=3)
# (output, token ids, layers executed per token) per sample; the first four embedded questions
FULL = [(" Paris", [1, 2], [8, 8]), (" Mars", [3], [8]), (" Shakespeare", [4, 5, 6], [8, 8, 8]), (" Rome", [7, 8], [8, 8])]
EARLY = [(" Paris", [1, 2], [8, 4]), (" Venus", [9], [8]), (" Shakespeare", [4, 5, 6], [8, 4, 6]),
         (" a a a a", [5, 5, 5, 5, 5, 5], [8, 4, 4, 4, 4, 4])]


def ledger(records: list[dict], method, table: dict) -> dict:
    """Stands in for costs.ledger.cell_flops's interface: per-sample totals with a 10-FLOP prompt
    forward, 1 FLOP per layer run."""
    per_sample = [{"executed": 10 + sum(r["layers_executed"]), "full": 10 + 8 * len(r["layers_executed"]),
                   "decode_executed": sum(r["layers_executed"][1:]), "decode_full": 8 * (len(r["layers_executed"]) - 1)}
                  for r in records]
    executed, full = sum(s["executed"] for s in per_sample), sum(s["full"] for s in per_sample)
    return {"savings": 1 - executed / full, "decode_savings": 0.0, "per_sample": per_sample, "unit": "test"}


def write_cell_inputs(tmp: Path, method: str, samples: list[tuple]) -> Path:
    spec = DecodeSpec(backbone="tiny", family="transformer", task="triviaqa", method=parse_method(method),
                      exits={"count": 2}, repetition_penalty=1.0, max_new_tokens=8, batch_size=1, prefix_cache=False,
                      dtype="float32", device="cpu", seed=0)
    header = {"decode_spec": spec.to_dict(), "task_spec": TASK.to_dict(), "exit_positions": [4, 6]}
    ids = ["dynamax_tqa_000", "dynamax_tqa_001", "dynamax_tqa_002", "dynamax_tqa_003"]
    path = tmp / f"{method}.jsonl"
    write_jsonl(path, [header] + [{"id": i, "prompt": "", "output": o, "token_ids": t, "layers_executed": e,
                                   "stop_reason": "eos"} for i, (o, t, e) in zip(ids, samples)])
    return path


@pytest.fixture
def scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(score, "cell_flops", ledger)
    write_json(tmp_path / "backbone" / "dynamax_backbone.json", {"name": "tiny", "label": "tiny", "num_layers": 8})
    write_json(tmp_path / "flops.json", {})
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
