"""With no exit taken, the engine reproduces `model.generate(do_sample=False)` token for token."""

from __future__ import annotations

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine import ConstantRule, EarlyExitGenerator, Strategy

PROMPTS = [
    "Question: What is the capital city of France??\nAnswer:",
    "The three primary colours are",
    "def fibonacci(n):",
]


def reference(backbone: Backbone, prompt: str, max_new_tokens: int, penalty: float) -> list[int]:
    ids = backbone.tokenizer(prompt, return_tensors="pt").input_ids
    out = backbone.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
        repetition_penalty=penalty,
    )
    return out[0, ids.shape[1]:].tolist()


def generator(backbone: Backbone, max_new_tokens: int, penalty: float) -> EarlyExitGenerator:
    return EarlyExitGenerator(
        backbone.model, backbone.tokenizer, exit_layers=exit_positions({}, backbone.num_layers),
        max_new_tokens=max_new_tokens, repetition_penalty=penalty,
    )


def check_never_exit_equals_generate(backbone: Backbone, max_new_tokens: int) -> None:
    policies = {"transformer": ["copy", "partial"], "mamba2": ["skip", "partial"]}[backbone.family]
    for penalty in (1.0, 1.3):
        engine = generator(backbone, max_new_tokens, penalty)
        for prompt in PROMPTS:
            expected = reference(backbone, prompt, max_new_tokens, penalty)
            full = engine.generate(prompt, Strategy.full())
            assert full.token_ids == expected, f"full path differs from model.generate on {prompt!r}"
            assert full.exit_layers == [backbone.num_layers] * len(expected)
            for policy in policies:
                never = engine.generate(prompt, Strategy.early_exit(ConstantRule(0.0), policy))
                assert never.token_ids == expected, f"never-exit ({policy}) differs on {prompt!r}"


def test_tiny_mistral_matches_generate(tiny_mistral: Backbone) -> None:
    check_never_exit_equals_generate(tiny_mistral, max_new_tokens=24)


def test_tiny_mamba2_matches_generate(tiny_mamba2: Backbone) -> None:
    check_never_exit_equals_generate(tiny_mamba2, max_new_tokens=24)


@pytest.mark.slow
def test_smollm2_matches_generate(smollm2: Backbone) -> None:
    check_never_exit_equals_generate(smollm2, max_new_tokens=16)


@pytest.mark.parametrize("name", ["tiny_mistral", "tiny_mamba2"])
def test_prune0_equals_full_and_oracle_is_consistent(name: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(name)
    engine = generator(backbone, 20, 1.0)
    exits = set(engine.points)
    for prompt in PROMPTS:
        full = engine.generate(prompt, Strategy.full())
        pruned = engine.generate(prompt, Strategy.prune(backbone.num_layers, 0))
        oracle = engine.generate(prompt, Strategy(oracle=True))
        assert pruned.token_ids == full.token_ids and pruned.exit_layers == full.exit_layers
        assert oracle.token_ids == full.token_ids
        assert oracle.exit_layers[0] == backbone.num_layers  # first token: the prompt's full forward
        assert set(oracle.exit_layers[1:]) <= exits | {backbone.num_layers}


@pytest.mark.parametrize("name", ["tiny_mistral", "tiny_mamba2"])
def test_always_exit_leaves_at_the_first_exit(name: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(name)
    engine = generator(backbone, 12, 1.0)
    policy = {"transformer": "copy", "mamba2": "skip"}[backbone.family]
    out = engine.generate(PROMPTS[1], Strategy.early_exit(ConstantRule(1.0), policy))
    first_exit = min(engine.points)
    assert out.exit_layers == [backbone.num_layers] + [first_exit] * (len(out.token_ids) - 1)


def test_pruned_model_runs_only_kept_layers(tiny_mistral: Backbone) -> None:
    engine = generator(tiny_mistral, 10, 1.0)
    out = engine.generate(PROMPTS[0], Strategy.prune(tiny_mistral.num_layers, 3))
    assert out.exit_layers == [tiny_mistral.num_layers - 3] * len(out.token_ids)


def test_stop_strings_cut_the_text(smoke_config: dict, tiny_mistral: Backbone) -> None:
    engine = EarlyExitGenerator(tiny_mistral.model, tiny_mistral.tokenizer, exit_layers=[4, 5, 6, 7],
                                max_new_tokens=30, stop_strings=["e"])
    out = engine.generate(PROMPTS[1], Strategy.full())
    if out.stop_reason == "stop_string":
        assert "e" not in out.text
        assert "e" in tiny_mistral.tokenizer.decode(out.token_ids, skip_special_tokens=True)
    else:
        assert "e" not in tiny_mistral.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def test_wrong_policy_for_family_is_refused(tiny_mamba2: Backbone) -> None:
    engine = generator(tiny_mamba2, 4, 1.0)
    with pytest.raises(ValueError, match="does not apply to a mamba2 backbone"):
        engine.generate(PROMPTS[0], Strategy.early_exit(ConstantRule(1.0), "copy"))
