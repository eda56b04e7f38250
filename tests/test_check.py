"""The regression check on a small synthetic run scored by the real `score` rule: it passes on its own
reference, gates tokens on the reference's platform while the cells' artefacts are the reference's,
holds every number exact whose inputs are unchanged (and names the rule that judged each field),
derives tolerances from n, takes partial references, refuses to shrink a reference, and exits 2
(not 1) when it cannot run."""

from __future__ import annotations

import json
import re
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from dynamax_bench.costs.lengths import LengthModel
from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json, write_json
from dynamax_bench.generation.generate import write_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.reporting import score
from dynamax_bench.reporting.check import compare, counts, load_reference, main, read_cells, run_check
from dynamax_bench.reporting.reference import EXITS_FIELD, HASH_FIELD, ReferenceError
from dynamax_bench.reporting.score import score_cell
from dynamax_bench.reporting.tolerances import bootstrap, interval, length_window, ratio, saving, wilson, without_exits
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

L = 8


def poly(*coefficients: int) -> dict:
    """An exact per-length FLOPs count (costs/lengths.py)."""
    return LengthModel("polynomial", tuple(Fraction(c) for c in coefficients), degree=len(coefficients) - 1).to_dict()


TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=6, num_fewshot=0, fewshot_source=None, options={})
TABLE = {
    "num_layers": L, "exit_positions": [4, 5, 6, 7], "context_length": 16, "unit": "test",
    "blocks": {"layer_prefill": {"flops": 0, "per_length": poly(0, 100)},  # 100 per prompt token
               "layer_decode": {"flops": 0, "per_length": poly(1000)},
               "head": {"flops": 500}, "fill_partial": {"flops": 100}, "fill_copy": {"flops": 0}},
    "exit_methods": {"maxsoftmax": {"flops": 10}},
}
# method -> per sample: (output, token ids, layers run per token)
FULL = [(" Paris", [1, 2], [L, L]), (" Mars", [3], [L]), (" Shakespeare", [4, 5, 6], [L, L, L]),
        (" Atlantic", [7], [L]), (" Au", [8, 9], [L, L]), (" 365", [10], [L])]
METHODS = {
    "full": FULL,
    "prune2": [(" Paris", [1, 2], [6, 6]), (" Venus", [11], [6]), (" Dickens", [12], [6]),
               (" Atlantic", [7], [6]), (" Ag", [13], [6]), (" 365", [10], [6])],
    "ee-maxsoftmax-copy-t0.9": [(" Paris", [1, 2], [L, 4]), (" Mars", [3], [L]), (" Shakes", [4, 14], [L, 5]),
                                (" Atlantic", [7], [L]), (" Au", [8, 9], [L, 6]), (" 366", [15], [L])],
}


BACKBONE = {"name": "b", "sha256": "00000000000000aa"}
CLASSIFIER = {"name": "b/calm", "sha256": "00000000000000cc"}


def write_run(root: Path, methods: dict = METHODS, device: str = "cpu", backbone_digest: str = BACKBONE["sha256"],
              classifier_digest: str = CLASSIFIER["sha256"]) -> Path:
    """results/<profile>/ of a one-backbone, one-task run, each cell made by the real score_cell from
    generations that record the artefacts they were decoded with (the ee cell: a trained classifier)."""
    backbone = root / "backbone"
    write_json(backbone / "dynamax_backbone.json", {"name": "b", "label": "test", "family": "transformer", "num_layers": L})
    write_json(root / "flops" / "b.json", TABLE)
    _, samples = load_samples(TASK)
    for method, outputs in methods.items():
        spec = DecodeSpec(backbone="b", family="transformer", task="triviaqa", method=parse_method(method),
                          exits={"count": 4}, repetition_penalty=1.0, max_new_tokens=4, batch_size=1,
                          prefix_cache=False, dtype="float32", device=device, seed=0)
        artefacts = {"backbone": {**BACKBONE, "sha256": backbone_digest}}
        if method.startswith("ee-"):
            artefacts["classifier"] = {**CLASSIFIER, "sha256": classifier_digest}
        header = {"decode_spec": spec.to_dict(), "task_spec": TASK.to_dict(), "exit_positions": TABLE["exit_positions"],
                  "artefacts": artefacts}
        records = [{"id": s.id, "prompt": s.prompt, "prompt_tokens": 10, "output": out, "token_ids": ids, "layers_executed": exits,
                    "stop_reason": "stop_string"} for s, (out, ids, exits) in zip(samples, outputs)]
        write_generations(root / "generations" / "b" / "triviaqa" / f"{method}.jsonl", header, records)
    for method in methods:
        generations = root / "generations" / "b" / "triviaqa"
        score_cell(TASK, generations / f"{method}.jsonl", generations / "full.jsonl", backbone, root / "flops" / "b.json",
                   root / "cells" / "b" / "triviaqa" / f"{method}.json", profile="unit",
                   evidence=IntervalSettings(confidence=0.95, resamples=200, seed=0))
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def reference(run: Path, tmp_path: Path) -> Path:
    ref = tmp_path / "ref.json"
    assert main([str(run), str(ref), "--regenerate", "--reason", "test"]) == 0
    return ref


def failed(rows) -> set[tuple[str, str]]:
    return {(r.cell, r.path) for r in rows if r.status == "FAIL"}


def test_wilson_interval_matches_its_formula() -> None:
    assert wilson(0.5, 24) == pytest.approx((0.3143, 0.6857), abs=1e-4)
    low, high = wilson(0.0, 24)  # never zero-width, also at the boundary
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(1.959964**2 / (24 + 1.959964**2), abs=1e-6)


def test_bootstrap_is_seeded_and_a_tie_takes_the_wilson_interval_on_the_metric_scale() -> None:
    values = [10.0, 30.0, 0.0, 55.0, 12.5, 40.0]
    assert bootstrap(values) == bootstrap(values)
    low, high = bootstrap(values)
    assert low < sum(values) / 6 < high
    tie = interval(50.0, [50.0] * 6, (0.0, 100.0))
    expected = wilson(0.5, 6)
    assert (tie["low"], tie["high"]) == pytest.approx((100 * expected[0], 100 * expected[1]))
    assert "every sample equal" in tie["rule"]
    assert interval(8.0, [(8.0, 1.0)] * 6, statistic=ratio)["high"] == 8.0
    assert length_window(60)["low"] == pytest.approx(54) and length_window(60)["high"] == pytest.approx(66)


def test_an_early_exit_cell_with_no_exit_leaves_room_for_a_rebuilt_classifiers_exits() -> None:
    """A calibrated cell whose reference never exited: its bootstrap sees every token at L, so a classifier
    distilled on another processor that exits on 2% of tokens (mean 15.88 of 16) must not fail it."""
    layers = interval(16.0, [(16.0 * 9, 9.0)] * 64, statistic=ratio)
    savings = interval(-5e-7, [(1000.0 + i % 3, 1000.0) for i in range(64)], statistic=saving)
    assert (layers["low"], layers["high"]) == (16.0, 16.0)
    before = savings["low"], savings["high"]
    without_exits(layers, savings, 64, 16, 8, decode_share=0.004)
    lowest = 8 + wilson(1.0, 64)[0] * 8  # 15.547: the Wilson bound of "every token at L" at n = 64
    assert layers["low"] == pytest.approx(lowest) and layers["high"] == 16.0 and layers["low"] < 15.88
    moved = (16 - lowest) / 16 * 0.004  # what exits at that bound save of the decode FLOPs: 1.1e-4
    assert (savings["low"], savings["high"]) == pytest.approx((before[0] - moved, before[1] + moved))
    assert savings["high"] > 8.66e-5 and "no token exited" in layers["rule"] and "no token exited" in savings["rule"]


def test_a_rebuilt_classifier_may_exit_where_the_reference_never_did(tmp_path: Path) -> None:
    """The reference's t0.99 cell never exits (every token at L); a classifier distilled elsewhere exits on one
    of its nine tokens, with the same tokens: the gate names the rebuilt classifier and passes the cell."""
    never = {**METHODS, "ee-maxsoftmax-copy-t0.99": FULL}
    write_run(tmp_path / "ref", never)
    assert main([str(tmp_path / "ref"), str(tmp_path / "ref.json"), "--regenerate", "--reason", "test"]) == 0
    fields = json.loads((tmp_path / "ref.json").read_text())["cells"]["b/triviaqa/ee-maxsoftmax-copy-t0.99"]
    assert "no token exited" in fields["layers.mean_executed"]["rule"] and fields["layers.mean_executed"]["low"] < L
    exits_once = [(" Paris", [1, 2], [L, 7]), *FULL[1:]]
    write_run(tmp_path / "other", {**never, "ee-maxsoftmax-copy-t0.99": exits_once}, classifier_digest="00000000000000dd")
    rows, _ = run_check(tmp_path / "other", tmp_path / "ref.json")
    mine = {r.path: (r.rule, r.status) for r in rows if r.cell == "b/triviaqa/ee-maxsoftmax-copy-t0.99"}
    assert mine["layers.mean_executed"] == ("interval", "pass") and mine["flops.savings"] == ("interval", "pass")
    assert mine["metrics.em"] == ("same inputs", "pass")  # the tokens did not move: held exact
    assert not failed(rows) and any(r.status == "rebuilt" and "classifiers" in r.cell for r in rows)
    widened = json.loads((tmp_path / "ref.json").read_text())["cells"]["b/triviaqa/ee-maxsoftmax-copy-t0.9"]
    assert "no token exited" not in widened["layers.mean_executed"]["rule"]  # it exited: its bootstrap stands


def test_regenerated_reference_passes_and_says_where_each_tolerance_comes_from(run: Path, reference: Path, capsys) -> None:
    data = json.loads(reference.read_text())
    assert data["generated"]["reason"] == "test" and data["platform"]["device"] == "cpu"
    assert set(data["derivation"]) >= {"tokens", "artefacts", "same_inputs", "proportion", "average", "length",
                                       "latency"}
    full = data["cells"]["b/triviaqa/full"]
    assert len(full[HASH_FIELD]) == len(full[EXITS_FIELD]) == 16
    assert full["artefacts.backbone"] == BACKBONE["sha256"] and len(full["artefacts.task"]) == 16
    assert data["cells"]["b/triviaqa/ee-maxsoftmax-copy-t0.9"]["artefacts.classifier"] == CLASSIFIER["sha256"]
    assert full["metrics.em"]["rule"] == "Wilson 95% at n=6"
    assert full["metrics.em"]["low"] <= full["metrics.em"]["value"] <= full["metrics.em"]["high"]
    assert "MLPerf" in full["n_tokens"]["rule"]
    assert main([str(run), str(reference)]) == 0
    out = capsys.readouterr().out
    assert " 0 outside" in out and "same inputs" in out and "0 artefacts rebuilt" in out
    assert re.search(r"latency +\(all\) +- +- +not gated +the reference holds no latency values", out)


def test_same_tokens_with_another_score_is_a_scoring_regression(run: Path, reference: Path, tmp_path: Path) -> None:
    """Scores are a function of the tokens: with the reference's tokens any difference fails,
    however small against the sample-size interval."""
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    cell_path = moved / "cells" / "b" / "triviaqa" / "full.json"
    cell = read_json(cell_path)
    cell["metrics"]["f1"] += 0.01
    write_json(cell_path, cell)
    rows = compare(read_cells(moved), load_reference(reference))
    assert failed(rows) == {("b/triviaqa/full", "metrics.f1")}
    assert main([str(moved), str(reference)]) == 1


def test_other_tokens_fail_on_the_reference_platform_and_quality_is_judged_elsewhere(
    run: Path, reference: Path, tmp_path: Path,
) -> None:
    changed = {**METHODS, "full": [*FULL[:5], (" 366", [15], [L])]}  # one answer changes (and becomes right)
    rows = compare(read_cells(write_run(tmp_path / "cpu", changed)), load_reference(reference))
    assert ("b/triviaqa/full", HASH_FIELD) in failed(rows)
    em = next(r for r in rows if (r.cell, r.path) == ("b/triviaqa/full", "metrics.em"))
    assert em.status == "pass" and em.rule == "interval"  # 1 of 6 is within the noise of n=6
    assert "Wilson 95% at n=6 (tokens differ)" in em.tolerance

    rows = compare(read_cells(write_run(tmp_path / "gpu", changed, device="cuda")), load_reference(reference))
    token_rows = [r for r in rows if r.path == HASH_FIELD]
    assert token_rows and all(r.status == "unchecked" and r.rule == "not gated" for r in token_rows)
    assert not failed(rows)


def test_quality_outside_its_interval_fails_where_tokens_are_not_gated(run: Path, reference: Path, tmp_path: Path) -> None:
    wrong = [(" London", [20], [L]), (" Venus", [21], [L]), (" Dickens", [22], [L]), (" Indian", [23], [L]),
             (" Ag", [24], [L]), (" 364", [25], [L])]
    rows = compare(read_cells(write_run(tmp_path / "gpu", {**METHODS, "full": wrong}, device="cuda")),
                   load_reference(reference))
    assert ("b/triviaqa/full", "metrics.em") in failed(rows)


def test_partial_reference_leaves_the_rest_unchecked(run: Path, reference: Path, capsys) -> None:
    data = json.loads(reference.read_text())
    del data["cells"]["b/triviaqa/prune2"]
    data["cells"]["b/triviaqa/full"] = {"metrics.em": data["cells"]["b/triviaqa/full"]["metrics.em"]}
    reference.write_text(json.dumps(data))
    rows = compare(read_cells(run), load_reference(reference))
    assert not failed(rows)
    assert any(r.cell == "b/triviaqa/prune2" and r.status == "unchecked" for r in rows)
    assert main([str(run), str(reference)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"b/triviaqa/prune2 +\(cell\) +- +- +presence +not in the reference +unchecked", out)
    assert "unchecked fields (not in the reference): " in out and "metrics.f1" in out


def test_a_cell_of_the_reference_missing_from_the_run_fails(run: Path, reference: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    (partial / "cells" / "b" / "triviaqa" / "prune2.json").unlink()
    rows = compare(read_cells(partial), load_reference(reference))
    assert failed(rows) == {("b/triviaqa/prune2", "(cell)")}


def test_regenerate_on_a_partial_run_refuses_and_merge_keeps_the_rest(run: Path, reference: Path, tmp_path: Path,
                                                                       capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    for method in ("prune2", "ee-maxsoftmax-copy-t0.9"):
        (partial / "cells" / "b" / "triviaqa" / f"{method}.json").unlink()
    before = reference.read_bytes()
    assert main([str(partial), str(reference), "--regenerate", "--reason", "partial"]) == 2
    assert reference.read_bytes() == before
    assert "refusing to shrink" in capsys.readouterr().err
    assert main([str(partial), str(reference), "--regenerate", "--merge", "--reason", "one cell"]) == 0
    merged = json.loads(reference.read_text())
    assert len(merged["cells"]) == 3 and "merged: 1 cells replaced, 2 kept" in merged["generated"]["reason"]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"profile": "x"}', "invalid reference at '<top>'"),
])
def test_a_malformed_reference_exits_2_with_the_file_and_the_fix(run: Path, tmp_path: Path, text: str, message: str,
                                                                 capsys) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(text)
    assert main([str(run), str(ref)]) == 2
    err = capsys.readouterr().err
    assert str(ref) in err and message in err
    with pytest.raises(ReferenceError):
        load_reference(ref)


def test_missing_reference_names_the_command_that_creates_it(run: Path, tmp_path: Path, capsys) -> None:
    assert main([str(run), str(tmp_path / "none.json")]) == 2
    assert "--regenerate --reason" in capsys.readouterr().err


def test_latency_is_gated_relatively_when_the_reference_holds_it(run: Path, reference: Path, tmp_path: Path) -> None:
    timed = tmp_path / "timed"
    shutil.copytree(run, timed)
    write_json(timed / "latency" / "b" / "full.json", {"seconds_per_decode_token": {"median": 0.02, "p25": 0.019}})
    data = json.loads(reference.read_text())
    data["latency"] = {"b/full": {"latency.seconds_per_decode_token.median": 0.0125}}
    reference.write_text(json.dumps(data))
    rows, table = run_check(timed, reference)
    assert failed(rows) == {("latency/b/full", "latency.seconds_per_decode_token.median")}  # outside ×0.5
    assert "×0.5" in table


def test_paper_reported_values_file_is_valid_and_every_value_has_a_source() -> None:
    reference = load_reference(REPO_ROOT / "reference" / "paper_reported.json")
    assert reference["profile"] == "paper"
    for cell, fields in reference["cells"].items():
        for field in fields:
            assert reference["sources"][f"{cell}:{field}"]


def test_a_value_without_its_source_is_rejected(tmp_path: Path) -> None:
    reference = json.loads((REPO_ROOT / "reference" / "paper_reported.json").read_text())
    reference["cells"] = {"b/t/full": {"metrics.em": 0.5}}
    write_json(tmp_path / "ref.json", reference)
    with pytest.raises(ReferenceError, match="without a source"):
        load_reference(tmp_path / "ref.json")


def test_paper_reported_subset_compares_with_a_paper_run(run: Path, tmp_path: Path) -> None:
    """Any subset of the paper's values: those present are checked by the pattern rules, the rest unchecked."""
    reference = json.loads((REPO_ROOT / "reference" / "paper_reported.json").read_text())
    reference["cells"] = {"b/triviaqa/full": {"metrics.em": 0.65}}
    reference["sources"] = {"b/triviaqa/full:metrics.em": "Table III, row b / full, TriviaQA EM (test)"}
    write_json(tmp_path / "paper.json", reference)
    rows = compare(read_cells(run), load_reference(tmp_path / "paper.json"))
    em = next(r for r in rows if r.path == "metrics.em")
    assert em.status == "pass" and em.rule == "pattern"  # run EM 4/6
    assert em.tolerance == "metrics.*: ±0.05 (tokens not in the reference)"
    assert {r.cell for r in rows if r.status == "unchecked" and r.path == "(cell)"} == {
        "b/triviaqa/prune2", "b/triviaqa/ee-maxsoftmax-copy-t0.9"}


def test_wilson_bounds_are_exact_at_zero_and_one() -> None:
    """A cell with no loop at all must sit inside its own interval (not 2.8e-17 below it)."""
    assert wilson(0.0, 12)[0] == 0.0 and wilson(1.0, 12)[1] == 1.0
    low, high = wilson(0.5, 12)
    assert 0.0 < low < 0.5 < high < 1.0


def test_scipy_intervals_equal_the_hand_written_ones_they_replace() -> None:
    """scipy.stats.bootstrap draws the same resamples as the former hand-written bootstrap (seed 0,
    2000 x n indices at once) and binomtest's Wilson interval is the score formula: the tolerances
    of existing references are unchanged (values computed with the former code)."""
    values = [10.0, 30.0, 0.0, 55.0, 12.5, 40.0, 3.0, 4.0, 5.0, 66.0, 7.0]
    assert bootstrap(values) == pytest.approx((9.090909090909092, 34.73295454545451), abs=1e-12)
    rows = [(3.0, 1.0), (5.0, 2.0), (7.0, 3.0), (1.0, 1.0), (9.0, 4.0)]
    assert bootstrap(rows, ratio) == pytest.approx((1.875, 2.5555555555555554), abs=1e-12)
    z = 1.959963984540054
    for k, n in [(1, 24), (7, 12), (3, 6)]:
        p = k / n
        centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        assert wilson(p, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_a_tied_average_at_a_fractional_count_takes_the_hull_of_its_neighbouring_counts() -> None:
    """binomtest takes whole counts: 0.2 of 6 samples lies between 1 and 2, and the interval covers both."""
    assert wilson(0.2, 6) == (wilson(1 / 6, 6)[0], wilson(2 / 6, 6)[1])
    tie = interval(20.0, [20.0] * 6, (0.0, 100.0))
    assert tie["low"] < 20.0 < tie["high"] and tie["low"] == pytest.approx(100 * wilson(1 / 6, 6)[0])


def rows_of(rows, cell: str) -> dict:
    return {r.path: r for r in rows if r.cell == cell}


def test_every_field_names_the_rule_that_judged_it(run: Path, reference: Path) -> None:
    rows = compare(read_cells(run), load_reference(reference))
    assert {r.rule for r in rows} <= {"hash", "same inputs", "interval", "pattern", "not gated", "artefact", "presence"}
    ee = rows_of(rows, "b/triviaqa/ee-maxsoftmax-copy-t0.9")
    assert ee[HASH_FIELD].rule == ee[EXITS_FIELD].rule == "hash"
    assert {ee[p].rule for p in ("metrics.em", "consistency.token_prefix_agreement", "layers.mean_executed",
                                 "flops.savings", "n_tokens")} == {"same inputs"}
    artefacts = {(r.cell, r.status) for r in rows if r.rule == "artefact"}
    assert artefacts == {("(b backbone)", "pass"), ("(b/calm classifiers)", "pass"), ("(triviaqa task data)", "pass")}
    assert counts(rows)["failed"] == 0 and counts(rows)["tolerance"] == 0


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_changed_metric_definition_with_unchanged_inputs_fails_on_every_platform(
    run: Path, reference: Path, tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 37's fault: consistency's prefix agreement divided by the method's own length instead of
    the full model's. The tokens are the reference's, so the number must be too, also where the
    token hash itself is not gated (another device)."""
    ee = "ee-maxsoftmax-copy-t0.9"
    tokens, full = METHODS[ee][2][1], FULL[2][1]
    assert len(tokens) != len(full)  # a pair of unequal lengths: the denominator matters

    def wrong_denominator(tokens: list[int], reference: list[int]) -> float:
        same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), min(len(tokens), len(reference)))
        return same / len(tokens) if tokens else float(not reference)

    monkeypatch.setattr(score, "prefix_agreement", wrong_denominator)
    rerun = write_run(tmp_path / device, device=device)
    rows = compare(read_cells(rerun), load_reference(reference))
    assert failed(rows) == {(f"b/triviaqa/{ee}", "consistency.token_prefix_agreement")}
    row = rows_of(rows, f"b/triviaqa/{ee}")["consistency.token_prefix_agreement"]
    assert row.rule == "same inputs" and row.value != row.reference
    interval_of = load_reference(reference)["cells"][f"b/triviaqa/{ee}"]["consistency.token_prefix_agreement"]
    assert interval_of["low"] <= row.value <= interval_of["high"]  # an interval-width gate would have passed it


def test_a_rebuilt_backbone_is_named_once_and_its_cells_pass_on_statistical_tolerances(
    run: Path, reference: Path, tmp_path: Path, capsys,
) -> None:
    """Another processor trained other weights: one answer of `full` moved (tokens differ), the
    others did not. The hashes of the moved cell are not gated, its numbers whose inputs moved are
    judged by their intervals, and every number whose inputs did not move stays exact."""
    changed = {**METHODS, "full": [*FULL[:5], (" 366", [15], [L])]}
    moved = write_run(tmp_path / "moved", changed, backbone_digest="00000000000000bb")
    rows = compare(read_cells(moved), load_reference(reference))
    assert not failed(rows)
    full = rows_of(rows, "b/triviaqa/full")
    assert full[HASH_FIELD].status == "unchecked" and full[HASH_FIELD].tolerance == "b backbone rebuilt"
    assert full["metrics.em"].rule == "interval" and "b backbone rebuilt" in full["metrics.em"].tolerance
    prune = rows_of(rows, "b/triviaqa/prune2")  # its own tokens are the reference's, the full model's are not
    assert prune[HASH_FIELD].status == "pass" and prune["metrics.em"].rule == "same inputs"
    assert prune["consistency.output_match"].rule == "interval"
    rebuilt = [r for r in rows if r.status == "rebuilt"]
    assert [(r.cell, r.path) for r in rebuilt] == [("(b backbone)", "artefacts.backbone")]
    assert "of its 3 cells, 1 decoded otherwise" in rebuilt[0].tolerance
    assert main([str(moved), str(reference)]) == 0
    out = capsys.readouterr().out
    assert out.count("b backbone rebuilt: weights differ from the reference's") == 1
    assert "1 artefacts rebuilt" in out


def test_a_rebuilt_classifier_moves_the_exits_and_leaves_the_scores_of_its_tokens_exact(
    run: Path, reference: Path, tmp_path: Path,
) -> None:
    """Issue 38's cells: the same tokens from classifiers distilled elsewhere, which exit at other layers."""
    ee = "ee-maxsoftmax-copy-t0.9"
    exits = [(" Paris", [1, 2], [L, 5]), *METHODS[ee][1:]]  # same tokens, one exit a layer later
    rows = compare(read_cells(write_run(tmp_path / "other", {**METHODS, ee: exits}, classifier_digest="00000000000000dd")),
                   load_reference(reference))
    assert not failed(rows)
    cell = rows_of(rows, f"b/triviaqa/{ee}")
    assert cell[HASH_FIELD].status == "pass" and cell[EXITS_FIELD].status == "unchecked"
    assert cell["metrics.f1"].rule == cell["consistency.output_match"].rule == "same inputs"
    assert cell["layers.mean_executed"].rule == cell["flops.savings"].rule == "interval"
    assert "exits differ; b/calm classifiers rebuilt" in cell["layers.mean_executed"].tolerance


def test_exits_that_move_with_unchanged_artefacts_fail(run: Path, reference: Path, tmp_path: Path) -> None:
    ee = "ee-maxsoftmax-copy-t0.9"
    exits = [(" Paris", [1, 2], [L, 5]), *METHODS[ee][1:]]
    rows = compare(read_cells(write_run(tmp_path / "same", {**METHODS, ee: exits})), load_reference(reference))
    assert (f"b/triviaqa/{ee}", EXITS_FIELD) in failed(rows)


def test_a_reference_without_artefact_digests_gates_hashes_exactly_and_says_so(run: Path, reference: Path,
                                                                              tmp_path: Path, capsys) -> None:
    """References written before the digests were recorded (reference/default.json): strict, as before."""
    data = json.loads(reference.read_text())
    data["cells"] = {cell: {p: v for p, v in fields.items() if not p.startswith("artefacts.") and p != EXITS_FIELD}
                     for cell, fields in data["cells"].items()}
    reference.write_text(json.dumps(data))
    changed = {**METHODS, "full": [*FULL[:5], (" 366", [15], [L])]}
    rows = compare(read_cells(write_run(tmp_path / "moved", changed, backbone_digest="00000000000000bb")),
                   load_reference(reference))
    assert ("b/triviaqa/full", HASH_FIELD) in failed(rows)
    assert main([str(run), str(reference)]) == 0
    assert "the reference records no artefact digests" in capsys.readouterr().out
