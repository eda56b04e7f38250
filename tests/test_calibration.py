"""The calibrate stage: Learn-Then-Test's guarantee, the recorded trajectories' exactness, and a whole job on
the smoke profile's tiny Transformer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binom

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.calibration.calibrate import CalibrationSettings, calibrate_task, resolve
from dynamax_bench.calibration.ltt import p_value, rejected_prefix, units_needed
from dynamax_bench.calibration.record import record_trajectories, simulated_exits
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.config import exit_positions
from dynamax_bench.costs.flops import flops_table
from dynamax_bench.engine import EarlyExitGenerator, Strategy
from dynamax_bench.engine.promptstore import PromptStore
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=8, num_fewshot=0, fewshot_source=None, options={})
EXITS = {"count": 3}


def test_p_value_is_the_binomial_tail_and_the_sequence_stops_at_its_first_failure() -> None:
    assert p_value(3, 50, 0.1) == pytest.approx(binom.cdf(3, 50, 0.1))
    assert p_value(0, 59, 0.05) < 0.05 < p_value(0, 58, 0.05)
    assert units_needed(0.05, 0.05) == 59 and units_needed(0.2, 0.05) == 14
    assert rejected_prefix([0.01, 0.04, 0.2, 0.001], 0.05) == 2  # the last one is never tested
    with pytest.raises(ValueError, match="5 failures among 4 units"):
        p_value(5, 4, 0.1)


def test_fixed_sequence_testing_keeps_the_risk_of_the_chosen_threshold_under_delta() -> None:
    """Risk falls as the threshold rises; over many calibration draws, the chosen threshold's true risk
    exceeds delta in at most about epsilon of them (Learn-Then-Test's guarantee)."""
    thresholds = np.linspace(0.99, 0.5, 25)
    risk = 0.3 * (1.0 - thresholds) / 0.5  # 0.006 at the top, 0.3 at the bottom
    delta, epsilon, units = 0.1, 0.1, 80
    rng = np.random.default_rng(0)
    violations = 0
    reps = 2000
    for _ in range(reps):
        failures = rng.binomial(units, risk)
        chosen = rejected_prefix([p_value(int(f), units, delta) for f in failures], epsilon)
        violations += chosen > 0 and risk[chosen - 1] > delta
    assert violations / reps <= epsilon + 3 * np.sqrt(epsilon * (1 - epsilon) / reps)


@pytest.fixture(scope="module")
def setup(tiny_mistral: Backbone, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("calibration")
    exits = exit_positions({"exits": EXITS}, tiny_mistral.num_layers)
    torch.manual_seed(0)
    hidden = tiny_mistral.model.config.hidden_size
    save_classifiers(folder / "calm.safetensors", [build_classifier("calm", hidden) for _ in exits], exits, {})
    table = folder / "flops.json"
    flops_table(tiny_mistral.model.name_or_path, table, context_length=64, kinds=["calm", "maxsoftmax"], options={},
                exits=EXITS)
    spec = DecodeSpec(backbone="tiny_mistral", family="transformer", task="triviaqa", method=parse_method("full"),
                      exits=EXITS, repetition_penalty=1.0, max_new_tokens=5, batch_size=4, prefix_cache=True,
                      dtype="float32", device="cpu", seed=0)
    return {"folder": folder, "exits": exits, "table": table, "spec": spec}


def test_a_threshold_above_a_trajectorys_confidences_never_exits_and_one_at_them_exits_where_recorded(
        tiny_mistral: Backbone, setup: dict) -> None:
    _, samples = load_samples(TASK)
    engine = EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=setup["exits"], max_new_tokens=6)
    rule = build_strategy(parse_method("ee-maxsoftmax-copy-t0.5"), tiny_mistral).rule
    prompts = [s.prompt for s in samples[:4]]
    store = PromptStore()
    full, confidences = record_trajectories(engine, prompts, {"maxsoftmax": rule}, "copy", store)
    for prompt, generation, conf in zip(prompts, full, confidences["maxsoftmax"]):
        assert generation.token_ids == engine.generate(prompt, Strategy.full()).token_ids
        # the trajectory decoded from a copy: the store still holds the prompt's forward alone
        kept = engine.prompt_passes(prompt, [Strategy.full()], store)[Strategy.full().prompt_pass()]
        fresh = engine.prompt_pass(prompt, Strategy.full())
        assert all(torch.equal(k.keys, f.keys) and torch.equal(k.values, f.values)
                   for k, f in zip(kept.cache.layers, fresh.cache.layers))
        assert conf.shape == (len(generation.token_ids) - 1, len(setup["exits"]))
        if not conf.size:
            continue
        top = float(conf.max())
        rule.threshold = float(np.nextafter(np.float32(top), np.float32(2)))  # decisions compare in float32
        above = engine.generate(prompt, Strategy.early_exit(rule, "copy"))
        assert above.token_ids == generation.token_ids and set(above.exit_layers) == {tiny_mistral.num_layers}
        rule.threshold = top
        at = engine.generate(prompt, Strategy.early_exit(rule, "copy"))
        step, exit_index = np.argwhere(conf >= top)[0]
        expected = simulated_exits(conf, setup["exits"], tiny_mistral.num_layers, top)
        assert at.exit_layers[: step + 2] == expected[: step + 2]
        assert at.exit_layers[step + 1] == setup["exits"][exit_index]


def test_a_calibrate_job_certifies_monotone_thresholds_and_resolves_each_target(tiny_mistral: Backbone,
                                                                                 setup: dict, tmp_path: Path) -> None:
    settings = CalibrationSettings(kinds=["calm", "maxsoftmax"], policies=["copy"], consistency=[0.5, 0.8],
                                   epsilon=0.2, grid=[0.999, 0.99, 0.9, 0.7, 0.5, 0.3], prune=[2], max_decodes=2)
    out = tmp_path / "calibration.json"
    result = calibrate_task(setup["spec"], TASK, tiny_mistral.model.name_or_path, setup["folder"], setup["table"],
                            settings, out)
    assert result["samples"] == 8 and result["units"] == 8
    for kind in ("calm", "maxsoftmax"):
        entry = result["methods"][kind]["copy"]
        steps = entry["steps"]
        assert [s["threshold"] for s in steps] == settings.grid[: len(steps)]
        # every step's p-values are the binomial tails of its failing units
        for step in steps:
            for key, p in step["p_values"].items():
                assert p == pytest.approx(p_value(step["failing_units"], 8, 1 - float(key)))
        loose, tight = entry["consistency"]["0.5"], entry["consistency"]["0.8"]
        if tight["certified"]:
            assert loose["certified"] and loose["threshold"] <= tight["threshold"]
        for target, chosen in entry["consistency"].items():
            method = resolve(parse_method(f"ee-{kind}-copy-c{target}"), result)
            assert (method.threshold, method.certified) == (chosen["threshold"], chosen["certified"])
            assert method.runs_as_full == (not chosen["certified"])
        prune = entry["prune"]["2"]
        assert prune["target_savings"] == pytest.approx(result["prune_savings"]["2"])
        decoded = prune["decodes"]
        assert prune["reached"] == bool(decoded and decoded[-1]["decode_savings"] >= prune["target_savings"])
        assert prune["reached"] or prune["reason"]
    # the job's decodes are those the decoder makes of the same spec: the first step's failing units again
    first = result["methods"]["maxsoftmax"]["copy"]["steps"][0]
    from dynamax_bench.generation.decoder import Decoder

    task, samples = load_samples(TASK)
    prompts = [s.prompt for s in samples]
    full = Decoder.load(setup["spec"], tiny_mistral.model.name_or_path).generate(prompts, task.stop_strings)
    ee_spec = replace(setup["spec"], method=parse_method(f"ee-maxsoftmax-copy-t{first['threshold']}"))
    ee = Decoder.load(ee_spec, tiny_mistral.model.name_or_path).generate(prompts, task.stop_strings)
    assert first["failing_units"] == sum(a.text != b.text for a, b in zip(ee, full))
