"""Variant kinds: `<kind>_k<K>` (distilled at its own top-k) and `<kind>_fresh` (state from the first generated
token): what the registry derives, what the engine runs and what the ledger counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.calibration.record import record_trajectories
from dynamax_bench.classifiers.checkpoints import load_classifiers, save_classifiers
from dynamax_bench.classifiers.fresh_state import FreshStateRule
from dynamax_bench.classifiers.registry import build_classifier, exit_method
from dynamax_bench.config import exit_positions
from dynamax_bench.costs.ledger import sample_work
from dynamax_bench.engine import ClassifierRule, EarlyExitGenerator
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.spec import parse_method


def test_variant_names_derive_from_their_kind() -> None:
    k5, fresh = exit_method("mamba_k5"), exit_method("mamba_fresh")
    assert (k5.trained, k5.stateful, k5.top_k, k5.checkpoint, k5.distilled) == (True, True, 5, "mamba_k5", True)
    assert (fresh.prompt_state, fresh.checkpoint, fresh.distilled) == (False, "mamba", False)
    assert exit_method("calm_k3").top_k == 3 and not exit_method("calm_k3").stateful
    with pytest.raises(ValueError, match="keeps no state"):
        exit_method("calm_fresh")
    with pytest.raises(ValueError, match="variants exist of trained kinds only"):
        exit_method("maxsoftmax_k3")
    with pytest.raises(ValueError, match="unknown exit method kind 'mamba_x'"):
        exit_method("mamba_x")


def test_the_ledger_counts_no_prompt_pass_for_a_fresh_state() -> None:
    table = {"num_layers": 8, "exit_positions": [4, 6]}
    prompt = lambda kind: sample_work(20, [8, 4, 6], parse_method(f"ee-{kind}-copy-t0.5"), table).prompt  # noqa: E731
    assert prompt("mamba")[("classifier_prefill", 20)] == 2
    assert ("classifier_prefill", 20) not in prompt("mamba_fresh")
    decode = sample_work(20, [8, 4, 6], parse_method("ee-mamba_fresh-copy-t0.5"), table).decode
    assert decode[("decision", None)] == 2 * 2  # still steps at every exit position, as a stateful rule does


def test_a_fresh_state_reads_no_prompt_and_steps_from_empty(tiny_mistral: Backbone, tmp_path: Path) -> None:
    exits = exit_positions({"exits": {"count": 2}}, tiny_mistral.num_layers)
    torch.manual_seed(0)
    hidden = tiny_mistral.model.config.hidden_size
    save_classifiers(tmp_path / "mamba.safetensors", [build_classifier("mamba", hidden) for _ in exits], exits, {})
    fresh = build_strategy(parse_method("ee-mamba_fresh-copy-t0.5"), tiny_mistral, tmp_path / "mamba.safetensors").rule
    built = build_strategy(parse_method("ee-mamba-copy-t0.5"), tiny_mistral, tmp_path / "mamba.safetensors").rule
    assert isinstance(fresh, FreshStateRule) and type(built) is ClassifierRule
    engine = EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=exits, max_new_tokens=4)
    prompt = "The capital of France is"
    _, recorded = record_trajectories(engine, [prompt], {"fresh": fresh, "built": built}, "copy")
    assert recorded["fresh"][0].shape == recorded["built"][0].shape
    assert not torch.allclose(torch.tensor(recorded["fresh"][0][0]), torch.tensor(recorded["built"][0][0]))
    # stepping an empty state on the first decode position's hidden state gives the fresh rule's confidence
    classifiers, _ = load_classifiers(tmp_path / "mamba.safetensors", "mamba_fresh")
    ids = torch.tensor([tiny_mistral.tokenizer(prompt)["input_ids"]])
    generated = engine.generate(prompt, build_strategy(parse_method("full"), tiny_mistral))
    with torch.inference_mode():
        states = tiny_mistral.model(torch.cat([ids, torch.tensor([[generated.token_ids[0]]])], 1),
                                    output_hidden_states=True).hidden_states
        first = classifiers[exits[0]](states[exits[0]][:, -1:], {})[:, -1].float().softmax(-1)[0, 1]
    assert float(first) == pytest.approx(recorded["fresh"][0][0][0], abs=1e-5)
