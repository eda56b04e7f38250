"""Classifiers run in float32 (their training dtype), standardisation included, on any backbone dtype.

A bfloat16 backbone hands its classifiers bfloat16 hidden states (8 bits of mantissa). The
classifier must not also lose its own precision: cast to bfloat16, the standardisation
(hidden - mean) * scale alone cancels most of the digits of the residual stream's large
features. Here the same hidden states go to the strategy a float32 backbone builds and, rounded to
bfloat16, to the one a bfloat16 backbone builds: every exit decision must agree, except where the
float32 confidence lies within NEAR_TIE of the threshold (excused, counted and bounded).
"""

from __future__ import annotations

from pathlib import Path

import copy

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone, load_backbone
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.oracle import document_pass
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.engine import layer_stack
from dynamax_bench.generation.strategy import build_strategy
from dynamax_bench.spec import parse_method

THRESHOLD = 0.5
# bfloat16 rounds each input feature by up to 2^-9 of its size; through the standardisation and a
# classifier that moved a confidence by at most 0.0031 here (mamba; calm 0.0021, ffn 0.0009) and
# by at most 0.0014 on SmolLM2's residual stream: a decision may flip only within this bound.
NEAR_TIE = 0.01
TEXT = ("The river flows past the old mill and into the lake. Seven children played football in the park "
        "after school, and a recipe for bread needs flour, water, salt and yeast.")


def exit_states(backbone: Backbone) -> dict[int, torch.Tensor]:
    """float32 hidden states (1, T, d) at the four default exits of the smoke Mistral."""
    stack = layer_stack(backbone.model)
    ids = backbone.tokenizer(TEXT, return_tensors="pt").input_ids
    hiddens, _ = document_pass(stack, ids, [4, 5, 6, 7])
    return hiddens


def write_checkpoint(path: Path, kind: str, hiddens: dict[int, torch.Tensor]) -> None:
    """Seeded classifiers standardised with these states' statistics, as distill would save them."""
    torch.manual_seed(0)
    classifiers = []
    options = {"head_dim": 16, "chunk_size": 64} if kind == "mamba" else {}
    for h in hiddens.values():
        clf = build_classifier(kind, h.shape[-1], options)
        clf.mean.copy_(h[0].mean(0))
        clf.scale.copy_(1.0 / (h[0].std(0) + 1e-6))
        classifiers.append(clf)
    save_classifiers(path, classifiers, list(hiddens), {"dtype": "float32"})


@pytest.mark.parametrize("kind", ["calm", "ffn", "mamba"])
def test_bf16_and_fp32_backbones_take_the_same_exit_decisions(tmp_path: Path, tiny_mistral: Backbone, kind: str) -> None:
    hiddens = exit_states(tiny_mistral)
    write_checkpoint(tmp_path / f"{kind}.safetensors", kind, hiddens)
    method = parse_method(f"ee-{kind}-copy-t{THRESHOLD}")
    bf16 = load_backbone(tiny_mistral.model.name_or_path, dtype="bfloat16")
    rules = {dtype: build_strategy(method, backbone, tmp_path / f"{kind}.safetensors").rule
             for dtype, backbone in (("float32", tiny_mistral), ("bfloat16", bf16))}
    for clf in rules["bfloat16"].classifiers.values():
        assert {t.dtype for t in clf.state_dict().values()} == {torch.float32}
    excused, tokens, largest, largest_cast = 0, 0, 0.0, 0.0
    with torch.no_grad():
        for layer, h in hiddens.items():
            conf32 = rules["float32"].classifiers[layer](h)[0].float().softmax(-1)[:, 1]
            conf16 = rules["bfloat16"].classifiers[layer](h.to(torch.bfloat16))[0].float().softmax(-1)[:, 1]
            cast = copy.deepcopy(rules["float32"].classifiers[layer]).to(torch.bfloat16)  # the former set-up
            conf_cast = cast(h.to(torch.bfloat16))[0].float().softmax(-1)[:, 1]
            largest_cast = max(largest_cast, float((conf32 - conf_cast).abs().max()))
            near = (conf32 - THRESHOLD).abs() < NEAR_TIE
            same = (conf32 >= THRESHOLD) == (conf16 >= THRESHOLD)
            assert bool((same | near).all()), f"exit {layer}: decisions differ away from the threshold"
            excused += int(near.sum())
            tokens += len(conf32)
            largest = max(largest, float((conf32 - conf16).abs().max()))
    assert largest < NEAR_TIE, f"{kind}: a bf16 input moved a confidence by {largest:.4f}"
    assert largest < largest_cast, "a float32 classifier must be closer to the float32 run than a bf16-cast one"
    # the seeded classifiers put most confidences well away from the threshold: most decisions are checked
    assert excused <= 0.25 * tokens, f"{kind}: {excused} of {tokens} decisions are near-ties"
