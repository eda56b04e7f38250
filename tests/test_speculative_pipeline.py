"""A spec-* method through the rules' own functions on the smoke models (flops, generate, score, latency,
tables) and through the DAG (one job per cell, decoded at batch 1), and the costs it is judged by."""

from __future__ import annotations

import re

import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dynamax_bench.config import REPO_ROOT, ConfigError
from dynamax_bench.costs.flops import backbone_blocks, flops_table, layer_verify_count
from dynamax_bench.costs.latency import block_seconds, measure_latencies
from dynamax_bench.costs.lengths import LengthModel
from dynamax_bench.costs.speculation import (BlockCosts, agreement_by_exit, break_even, expected_tokens, payoff_grid,
                                             per_draft_acceptance, speculation_summary)
from dynamax_bench.engine import layer_stack
from dynamax_bench.files import read_json, read_jsonl, write_jsonl
from dynamax_bench.generation.generate import generate_cells
from dynamax_bench.profile_checks import check_profile
from dynamax_bench.reporting.paper_tables import TABLES
from dynamax_bench.reporting.score import score_cell
from dynamax_bench.reporting.statistics import IntervalSettings
from dynamax_bench.reporting.tables import speculative
from dynamax_bench.reporting.tables.main_results import main_results
from dynamax_bench.reporting.tables.render import PaperInputs
from dynamax_bench.reporting.tables.speculative import payoff_table, speculation_latency_table, speculation_table
from dynamax_bench.spec import decode_spec, latency_spec, parse_method, task_spec

SETTINGS = IntervalSettings(confidence=0.95, resamples=200, seed=0)
METHOD = "spec-e4-k3"


@pytest.fixture(scope="module")
def spec_config(smoke_config: dict) -> dict:
    """The smoke profile (which batches its generations) with one self-speculative row per backbone."""
    config = copy.deepcopy(smoke_config)
    config["methods"]["speculative"] = {name: [{"exit": 4, "draft": 3}] for name in config["backbones"]}
    return config


@pytest.fixture(scope="module", params=["tiny_mistral", "tiny_mamba2"])
def run(request: pytest.FixtureRequest, spec_config: dict, backbone_root: Path,
        tmp_path_factory: pytest.TempPathFactory) -> dict:
    """flops, full and spec generations of TriviaQA, their cells, and both methods' latency files."""
    name = request.param
    request.getfixturevalue(name)  # prepared under backbone_root
    root, backbone = tmp_path_factory.mktemp(name), backbone_root / name
    flops_table(backbone, root / "flops.json", context_length=spec_config["flops"]["context_length"], kinds=[],
                options={}, exits=spec_config["backbones"][name]["exits"])
    tasks = task_spec(spec_config, "triviaqa")
    specs = {m: decode_spec(spec_config, name, "triviaqa", m) for m in ("full", METHOD)}
    for method, spec in specs.items():
        generate_cells([spec], tasks, backbone, [root / f"{method}.jsonl"])
    cells = {m: score_cell(tasks, root / f"{m}.jsonl", root / "full.jsonl", backbone, root / "flops.json",
                           root / f"{m}.json", profile="smoke", evidence=SETTINGS) for m in specs}
    settings = {"prompts": 2, "repeats": 2, "warmup": 2, "throughput_batch": 2}
    latency = measure_latencies([latency_spec(spec_config, name, m) for m in specs],
                                task_spec(spec_config, spec_config["latency"]["task"]), settings, backbone,
                                [root / f"latency_{m}.json" for m in specs], root / "flops.json")
    return {"name": name, "root": root, "specs": specs, "cells": cells, "latency": dict(zip(specs, latency)),
            "flops": read_json(root / "flops.json"), "tasks": tasks, "backbone": backbone}


def test_spec_cells_decode_at_batch_1_and_equal_full(run: dict, smoke_config: dict) -> None:
    assert smoke_config["generation"]["batch_size"] > 1  # the profile batches the other methods
    spec = run["specs"][METHOD]
    assert (spec.batch_size, spec.prefix_cache) == (1, False) and spec.method == parse_method(METHOD)
    full, mine = (read_jsonl(run["root"] / f"{m}.jsonl")[1:] for m in ("full", METHOD))
    assert [r["token_ids"] for r in mine] == [r["token_ids"] for r in full]
    assert all("speculation" in r for r in mine) and not any("speculation" in r for r in full)
    header = read_jsonl(run["root"] / f"{METHOD}.jsonl")[0]
    assert header["agreement"]["rows"] == len(mine) and header["agreement"]["unexplained"] == 0


def test_spec_cell_records_acceptance_and_costs_its_rejected_drafts(run: dict) -> None:
    cell = run["cells"][METHOD]
    assert cell["consistency"]["output_match"] == 1.0
    found = cell["speculation"]
    records = read_jsonl(run["root"] / f"{METHOD}.jsonl")[1:]
    assert found["drafted"] == sum(found["per_sample"]["drafted"]) == sum(sum(r["speculation"]["drafted"]) for r in records)
    assert found["passes"] == sum(len(r["speculation"]["drafted"]) for r in records)
    assert 0 <= found["accepted"] <= found["drafted"] and found["acceptance_rate"] == found["accepted"] / found["drafted"]
    assert {"acceptance_rate", "per_draft_acceptance"} <= set(found["intervals"])
    # every round runs its drafts + 1 positions through every layer, plus draft heads: more than full
    assert cell["flops"]["per_token_executed"] > cell["flops"]["per_token_full"]
    assert cell["flops"]["savings"] < 0 < cell["flops"]["prompt"]["executed"] == cell["flops"]["prompt"]["full"]
    assert run["cells"]["full"]["speculation"] is None


def test_a_spec_cell_that_differs_from_full_fails_loudly(run: dict, tmp_path: Path) -> None:
    lines = read_jsonl(run["root"] / f"{METHOD}.jsonl")
    lines[2] = {**lines[2], "output": lines[2]["output"] + " (changed)"}
    write_jsonl(tmp_path / "changed.jsonl", lines)
    changed = re.escape(f"{tmp_path / 'changed.jsonl'}: {METHOD} reproduces the full model's output by construction")
    with pytest.raises(ValueError, match=changed + r".*\(1 of \d+\) differ from full's: a bug"):
        score_cell(run["tasks"], tmp_path / "changed.jsonl", run["root"] / "full.jsonl", run["backbone"],
                   run["root"] / "flops.json", tmp_path / "cell.json", profile="smoke", evidence=SETTINGS)


def test_spec_latency_has_its_acceptance_and_block_seconds_and_no_batched_throughput(run: dict) -> None:
    mine, full = run["latency"][METHOD], run["latency"]["full"]
    assert mine["throughput"] is None and full["throughput"] is not None
    assert mine["speculation"]["passes"] > 0 and mine["mean_tokens"] == full["mean_tokens"]
    costs = BlockCosts.from_dict(mine["block_seconds"])
    assert costs.unit == "seconds" and set(costs.over) >= {1, 4} and all(v > 0 for v in costs.over.values())
    table = speculation_latency_table([mine, full])
    assert list(table["method"]) == [METHOD] and mine["reference"]["method"] == "full"
    # against the `full` runs timed beside it in its own job, not the `full` job's
    assert table["measured speedup"].iloc[0] == pytest.approx(
        mine["reference"]["seconds_per_decode_token"]["median"] / mine["seconds_per_decode_token"]["median"])
    main = main_results(list(run["cells"].values()), [mine, full])
    assert set(main["method"]) == {"full", METHOD} and main.loc[main["method"] == METHOD, "speedup"].iloc[0] > 0


def test_speculation_table_predicts_from_the_per_draft_acceptance(run: dict) -> None:
    table = speculation_table(list(run["cells"].values()), list(run["latency"].values()), [run["flops"]])
    (row,) = table.to_dict("records")
    cell = run["cells"][METHOD]
    alpha = cell["speculation"]["per_draft_acceptance"]
    assert row["i.i.d. tokens per pass"] == pytest.approx(expected_tokens(alpha, 3))
    flops = BlockCosts.from_flops(run["flops"])
    assert row["predicted speedup (FLOPs)"] == pytest.approx(flops.speedup(alpha, 4, 3)) and row["predicted speedup (FLOPs)"] < 1
    assert row["consistency"] == 1.0 and row["decode FLOPs / full"] > 1


def test_tables_10_are_registered_and_written_for_runs_with_spec_cells_only(run: dict) -> None:
    inputs = PaperInputs(run={}, cells=list(run["cells"].values()), classifiers=[],
                         latency=list(run["latency"].values()), flops=[run["flops"]], backbones={},
                         evidence=SETTINGS.to_dict())
    found = speculative.tables(inputs)
    assert [t.stem for t in found] == ["table10_speculative", "table10b_speculative_latency",
                                       "table10c_speculative_payoff"]
    assert [t.title.split(":")[0] for t in found] == ["Table 10", "Table 10b", "Table 10c"]
    assert list(found[0].frame["method"]) == [METHOD]
    assert speculative.tables(replace(inputs, cells=[run["cells"]["full"]])) == []
    assert speculative.tables in TABLES


def test_layer_verify_length_model_is_fvcores_count_and_a_decode_step_at_one_position(tiny_mistral) -> None:
    stack = layer_stack(tiny_mistral.model)
    blocks = backbone_blocks(stack, 32)
    verify = LengthModel.from_dict(blocks["layer_verify"]["per_length"])
    decode = LengthModel.from_dict(blocks["layer_decode"]["per_length"])
    assert verify.exact and verify((32, 2)) == blocks["layer_verify"]["flops"]
    assert verify((57, 5)) == layer_verify_count(stack, 57, 5)["flops"]  # a length it never saw
    # 5 positions at once cost 5 decode steps at 57 cached, plus each query's scores against the 4 positions of
    # the pass it is masked from (sdpa computes the whole score matrix; width 64) and the causal mask (a few flops)
    assert verify((57, 5)) - 5 * decode(57) == pytest.approx(2 * 64 * 5 * 4, abs=8)
    assert "layer_verify" not in backbone_blocks(layer_stack(_mamba_model()), 8)


def _mamba_model() -> torch.nn.Module:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    return Mamba2ForCausalLM(Mamba2Config(hidden_size=64, num_hidden_layers=2, num_heads=8, head_dim=16, state_size=16,
                                          n_groups=1, chunk_size=16, vocab_size=128)).eval()


def test_acceptance_statistics_and_the_iid_model() -> None:
    records = [{"layers_executed": [8] * 9, "speculation": {"drafted": [3, 3, 3], "accepted": [3, 1, 0]}},
               {"layers_executed": [8], "speculation": {"drafted": [], "accepted": []}}]
    found = speculation_summary(records)
    assert (found["passes"], found["drafted"], found["accepted"]) == (3, 9, 4)
    assert found["acceptance_rate"] == 4 / 9
    assert found["per_draft_acceptance"] == per_draft_acceptance([(3, 3), (3, 1), (3, 0)]) == 4 / 6  # 2 rejections
    assert found["tokens_per_pass"] == 8 / 3
    assert found["by_position"]["1"] == {"tried": 3, "accepted": 2, "rate": 2 / 3}
    assert found["by_position"]["2"] == {"tried": 2, "accepted": 1, "rate": 1 / 2}
    assert expected_tokens(0.0, 4) == 1 and expected_tokens(1.0, 4) == 5 and expected_tokens(0.5, 2) == 1.75


def test_block_costs_price_a_round() -> None:
    """Unit costs: a layer step 1, a pass over m positions m (compute-bound), head 10 per position; L = 4."""
    costs = BlockCosts(unit="u", num_layers=4, step=1.0, lower=1.0, over={m: float(m) for m in range(1, 6)}, head=10.0,
                       head_over={m: 10.0 * m for m in range(1, 6)})
    assert costs.full_step() == 14
    # K=2 drafts at E=1: 2 x (1 + 10) + 1 + 3 layers x 3 positions + 30
    assert costs.round(1, 2) == 22 + 1 + 9 + 30
    assert costs.speedup(1.0, 1, 2) == pytest.approx(3 * 14 / 62)  # every draft accepted, and still no gain: 0.68
    bandwidth = BlockCosts(unit="u", num_layers=4, step=1.0, lower=1.0, over=dict.fromkeys(range(1, 6), 1.0), head=10.0,
                           head_over=dict.fromkeys(range(1, 6), 10.0))  # a pass over m costs one step
    assert bandwidth.speedup(1.0, 1, 2) == pytest.approx(3 * 14 / (22 + 1 + 3 + 10))  # 1.17: pays
    with pytest.raises(ValueError, match="over 9 positions"):
        costs.round(1, 8)
    assert break_even(costs, 1, 2) is None  # compute-bound: not even every draft accepted pays
    alpha = break_even(bandwidth, 1, 2)  # 1 + a + a^2 = 36 / 14
    assert bandwidth.speedup(alpha, 1, 2) == pytest.approx(1.0) and 0 < alpha < 1


def test_payoff_grid_reads_the_oracles_top1_agreement(run: dict) -> None:
    meta = {"backbone": run["name"], "top_k_selection": {"sweep": {"1": {"test": {"exits": {
        "2": {"positive_rate": 0.25}, "6": {"positive_rate": 0.75}}}}}}}
    assert agreement_by_exit(meta) == {2: 0.25, 6: 0.75}
    assert agreement_by_exit({"top_k_selection": {"sweep": {"3": {}}}, "training": {"top_k": 3}}) == {}
    flops = BlockCosts.from_flops(run["flops"])
    grid = payoff_grid({2: 0.25, 6: 0.75}, [flops])
    assert len(grid) == 2 * 8 and all(row["speedup (flops)"] < 1 for row in grid)  # FLOPs never pay
    table = payoff_table([meta], list(run["latency"].values()), [run["flops"]])
    assert {"speedup (seconds)", "speedup (flops)"} <= set(table.columns) and len(table) == 16


def test_block_seconds_time_the_engines_own_calls(tiny_mamba2) -> None:
    costs = block_seconds(layer_stack(tiny_mamba2.model), context=12, positions=[1, 3], repeats=2)
    assert set(costs.over) == {1, 3} and costs.num_layers == tiny_mamba2.num_layers
    # wall times on a shared machine: their order is not asserted (no timed tests), only what each block is
    assert all(value >= 0 for value in costs.over.values()) and costs.step >= 0 and costs.head > 0
    assert costs.lower == costs.over[1] and set(costs.head_over) == {1, 3}


def test_dag_plans_one_batch1_job_per_spec_cell(tmp_path: Path, smoke_config: dict) -> None:
    """A profile's `methods.speculative` rows become cells of every task (made and scored one per job by
    `generate` and `score`) and latency files (rule `latency`)."""
    override = tmp_path / "override.yaml"
    override.write_text("methods:\n  speculative:\n" + "".join(
        f"    {name}: [{{exit: 4, draft: 3}}, {{exit: 2, draft: 5}}]\n" for name in smoke_config["backbones"]))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"),
                             "--directory", str(tmp_path), "paper_tables/", "-n", "-p", "--configfile",
                             str(REPO_ROOT / "config" / "smoke.yaml"), str(override)],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = result.stdout
    for name in smoke_config["backbones"]:
        for method in ("spec-e4-k3", "spec-e2-k5"):
            for task in smoke_config["tasks"]:
                for stage, suffix in (("generations", "jsonl"), ("cells", "json")):
                    assert f"output: results/smoke/{stage}/{name}/{task}/{method}.{suffix}\n" in plan, (stage, method)
            assert f"output: results/smoke/latency/{name}/{method}.json\n" in plan


@pytest.mark.parametrize(("entry", "message"), [
    ({"tiny_gpt": [{"exit": 2, "draft": 2}]}, r"methods.speculative.tiny_gpt: no such backbone"),
    ({"tiny_mistral": [{"exit": 8, "draft": 2}]}, r"methods.speculative.tiny_mistral: exit \[8\] leaves no layer"),
])
def test_bad_speculative_rows_are_refused_with_the_key(entry: dict, message: str, smoke_config: dict) -> None:
    config = copy.deepcopy(smoke_config)
    config["methods"]["speculative"] = entry
    with pytest.raises(ConfigError, match=message):
        check_profile(config)


@pytest.mark.parametrize("explained", [True, False])
def test_a_row_changed_at_a_near_tie_takes_the_full_models_output(explained: bool, tiny_mistral, spec_config: dict,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder re-decodes a spec row that met a verification near tie with the full model at batch 1: a
    row the verification changed there takes the full model's output (its rounds drafting nothing) and is
    counted; a change where the row met no near tie stops the run."""
    from dynamax_bench.engine.neartie import NearTie
    from dynamax_bench.engine.speculative import SpeculativeGenerator
    from dynamax_bench.generation.decoder import Decoder

    own = SpeculativeGenerator.speculate

    def flipped(self, prompt, on_first_token=None, start=None):  # token 2 of the first row changed, as a tie might
        out = own(self, prompt, on_first_token, start)
        if prompt == prompts[0]:
            out.token_ids = out.token_ids[:2] + [out.token_ids[2] + 1] + out.token_ids[3:]
            out.near_ties = [NearTie(token=2 if explained else 4, kind="logit_margin", layer=8, value=1e-5)]
        return out

    monkeypatch.setattr(SpeculativeGenerator, "speculate", flipped)
    prompts = ["The three primary colours are", "def fibonacci(n):"]
    decoder = Decoder.for_backbone(decode_spec(spec_config, "tiny_mistral", "triviaqa", METHOD), tiny_mistral)
    if not explained:
        with pytest.raises(RuntimeError, match="at no near tie in rows \\[0\\].*a bug of engine/speculative.py"):
            decoder.decode(prompts, [], max_new_tokens=8, disable_tqdm=True)
        return
    generations, agreement = decoder.decode(prompts, [], max_new_tokens=8, disable_tqdm=True)
    (reference,) = [decoder.generator([], 8).generate(prompts[0], decoder.strategy)]
    assert agreement.rows_differing == 1 and agreement.differences[0].token == 2
    assert generations[0].token_ids == reference.token_ids and generations[0].drafted == [0] * 7
    assert sum(generations[1].drafted) > 0  # the other row keeps its speculation
