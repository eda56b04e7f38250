"""Self-speculative decoding reproduces the full model's greedy decoding token for token, on every path a
round can take, and leaves the caches as plain decoding leaves them (Mamba-2: bit for bit in float32).

Natural drafts on the smoke models mostly all agree (tiny Mistral repeats itself) or mostly fail (tiny
Mamba-2), so the rounds' paths are also forced: a scripted draft proposes the full model's own tokens
(every draft accepted), wrong ones at chosen places (partial acceptance, rejection at the first draft), or
an end-of-sequence token; the draft still runs the lower layers and the head, only its token is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import Generation, Strategy
from dynamax_bench.engine.neartie import Bounds
from dynamax_bench.engine.speculative import (SpeculativeGeneration, SpeculativeGenerator, Speculation,
                                              full_decode_rounds)
from dynamax_bench.engine.stacks import TransformerStack

PROMPTS = [
    "Question: What is the capital city of France??\nAnswer:",
    "The three primary colours are",
    "def fibonacci(n):",
]
BACKBONES = ["tiny_mistral", "tiny_mamba2"]


class Scripted(SpeculativeGenerator):
    """Drafts the token `script(index, reference)` for generated position `index` (0 is the prompt's
    token), after running the real draft head on the layer-E state."""

    script: Callable[[int, list[int]], int]
    reference: list[int]
    prompt_length: int

    def _draft(self, hidden: torch.Tensor, sequence: list[int]) -> int:
        super()._draft(hidden, sequence)
        return self.script(len(sequence) - self.prompt_length, self.reference)


def wrong(token: int) -> int:
    return (token + 1) % 1000


SCRIPTS: dict[str, Callable[[int, list[int]], int]] = {
    "every draft accepted": lambda i, ref: ref[i] if i < len(ref) else 0,
    "rejected at the first draft": lambda i, ref: wrong(ref[i]) if i < len(ref) else 0,
    "partial acceptance": lambda i, ref: (wrong(ref[i]) if i % 3 == 2 else ref[i]) if i < len(ref) else 0,
}


def run(backbone: Backbone, prompt: str, speculation: Speculation, *, max_new_tokens: int = 20, penalty: float = 1.0,
        eos: list[int] | None = None, stops: tuple[str, ...] = (), script: str | None = None
        ) -> tuple[SpeculativeGeneration, Generation]:
    """(speculative, plain full decoding) of one prompt under the same settings."""
    cls = SpeculativeGenerator if script is None else Scripted
    engine = cls(backbone.model, backbone.tokenizer, speculation=speculation, max_new_tokens=max_new_tokens,
                 repetition_penalty=penalty, stop_strings=stops, eos_token_ids=[] if eos is None else eos)
    ids = backbone.tokenizer(prompt).input_ids
    reference = engine.generate(ids, Strategy.full())
    if script is not None:
        engine.script, engine.reference, engine.prompt_length = SCRIPTS[script], reference.token_ids, len(ids)
    return engine.speculate(ids), reference


def check_rounds(out: SpeculativeGeneration, draft_tokens: int) -> None:
    """Every round drafts at most K tokens and keeps its accepted drafts plus one token (the last round
    fewer where the sequence stopped inside it): the rounds account for every decode token."""
    assert all(0 <= a <= d <= draft_tokens for d, a in zip(out.drafted, out.accepted))
    decode_tokens = len(out.token_ids) - 1
    assert len(out.drafted) == len(out.accepted) == (decode_tokens > 0) * len(out.drafted)
    if out.drafted:
        before_last = sum(a + 1 for a in out.accepted[:-1])
        assert before_last < decode_tokens <= before_last + out.accepted[-1] + 1


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize(("layer", "tokens"), [(1, 1), (4, 3), (7, 6)])
def test_natural_drafts_equal_full_decoding(name: str, layer: int, tokens: int, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(name)
    for penalty in (1.0, 1.3):
        for prompt in PROMPTS:
            out, reference = run(backbone, prompt, Speculation(layer, tokens), penalty=penalty)
            assert out.token_ids == reference.token_ids, (prompt, penalty)
            assert out.stop_reason == reference.stop_reason and out.text == reference.text
            assert out.exit_layers == [backbone.num_layers] * len(out.token_ids)
            check_rounds(out, tokens)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_round_path_equals_full_decoding(name: str, script: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(name)
    for prompt in PROMPTS:
        out, reference = run(backbone, prompt, Speculation(3, 4), script=script)
        assert out.token_ids == reference.token_ids, prompt
        check_rounds(out, 4)
        full_rounds = out.drafted[:-1]  # the last round may be cut by max_new_tokens
        if script == "every draft accepted":
            assert out.accepted == out.drafted and set(full_rounds) == {4}
        elif script == "rejected at the first draft":
            assert set(out.accepted) == {0} and len(out.drafted) == len(out.token_ids) - 1
        else:  # drafts at generated positions 3k+2 are wrong: a round keeps the drafts before the next one
            assert 0 < sum(out.accepted) < sum(out.drafted) and max(out.accepted) < 4


@pytest.mark.parametrize("name", BACKBONES)
def test_max_new_tokens_inside_a_draft(name: str, request: pytest.FixtureRequest) -> None:
    """A round drafts no further than the budget: 9 tokens at K=5 are the prompt's, 5 + 1, then 1 + 1."""
    backbone: Backbone = request.getfixturevalue(name)
    out, reference = run(backbone, PROMPTS[0], Speculation(2, 5), max_new_tokens=9, script="every draft accepted")
    assert out.token_ids == reference.token_ids and len(out.token_ids) == 9
    assert out.stop_reason == "max_new_tokens" and out.drafted == [5, 1] and out.accepted == [5, 1]
    one, _ = run(backbone, PROMPTS[0], Speculation(2, 5), max_new_tokens=2, script="every draft accepted")
    assert one.drafted == [0] and len(one.token_ids) == 2  # the last token: a plain step of the full model


def inside_a_draft(tokens: list[int]) -> int:
    """The first generated index past the prompt's token that holds a token new to the output and is
    a draft of a round that drafts K=4 (positions 5, 10, ... are each round's full-model token)."""
    return next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i] and i % 5)


@pytest.mark.parametrize("name", BACKBONES)
def test_eos_inside_a_draft(name: str, request: pytest.FixtureRequest) -> None:
    """A drafted end-of-sequence token ends the draft: accepted, the sequence ends with it; rejected, the
    full model's token replaces it and decoding goes on."""
    backbone: Backbone = request.getfixturevalue(name)
    _, plain = run(backbone, PROMPTS[2], Speculation(2, 4), max_new_tokens=16, penalty=1.3)
    eos = plain.token_ids[inside_a_draft(plain.token_ids)]  # with it as EOS, the full model stops there
    out, reference = run(backbone, PROMPTS[2], Speculation(2, 4), max_new_tokens=16, penalty=1.3, eos=[eos],
                         script="every draft accepted")
    assert reference.stop_reason == "eos" and out.token_ids == reference.token_ids and out.stop_reason == "eos"
    assert out.token_ids[-1] == eos and out.drafted[-1] == out.accepted[-1] < 4  # the last round's drafts ended with it
    never = next(t for t in range(1000) if t not in plain.token_ids)  # an EOS the full model never produces
    engine = Scripted(backbone.model, backbone.tokenizer, speculation=Speculation(2, 4), max_new_tokens=16,
                      repetition_penalty=1.3, eos_token_ids=[never])
    ids = backbone.tokenizer(PROMPTS[2]).input_ids
    engine.script, engine.reference, engine.prompt_length = lambda i, ref: never, plain.token_ids, len(ids)
    rejected = engine.speculate(ids)
    assert rejected.token_ids == plain.token_ids and set(rejected.accepted) == {0}
    assert rejected.drafted == [1] * 14 + [0]  # one rejected draft per round; the last token has no budget for one


@pytest.mark.parametrize("name", BACKBONES)
def test_stop_string_inside_accepted_drafts(name: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(name)
    _, plain = run(backbone, PROMPTS[2], Speculation(2, 4), max_new_tokens=16, penalty=1.3)
    at = inside_a_draft(plain.token_ids)
    stop = backbone.tokenizer.decode(plain.token_ids[at:at + 1]).strip()
    assert stop and stop not in backbone.tokenizer.decode(plain.token_ids[:at]), "a stop string first met inside a draft"
    out, reference = run(backbone, PROMPTS[2], Speculation(2, 4), max_new_tokens=16, penalty=1.3, stops=(stop,),
                         script="every draft accepted")
    assert reference.stop_reason == "stop_string" and out.stop_reason == "stop_string"
    assert out.token_ids == reference.token_ids and out.text == reference.text and len(out.token_ids) == at + 1


def states_after(backbone: Backbone, speculation: Speculation, script: str) -> tuple:
    """The caches after speculative and after plain decoding of one prompt (each from its own prompt pass)."""
    engine = Scripted(backbone.model, backbone.tokenizer, speculation=speculation, max_new_tokens=20, eos_token_ids=[])
    ids = backbone.tokenizer(PROMPTS[0]).input_ids
    plain_pass, spec_pass = engine.prompt_pass(ids, Strategy.full()), engine.prompt_pass(ids, Strategy.full())
    plain = engine.generate(ids, Strategy.full(), start=plain_pass)
    engine.script, engine.reference, engine.prompt_length = SCRIPTS[script], plain.token_ids, len(ids)
    out = engine.speculate(ids, start=spec_pass)
    assert out.token_ids == plain.token_ids
    return spec_pass.cache, plain_pass.cache, out


@pytest.mark.parametrize("script", ["partial acceptance", "rejected at the first draft"])
def test_mamba2_state_after_rollback_equals_plain_decoding_bit_for_bit(script: str, tiny_mamba2: Backbone) -> None:
    """Every layer's conv and SSM state after speculation (rejected positions rolled back by the kept
    snapshots) is the plain decode's, bit for bit in float32."""
    assert tiny_mamba2.model.dtype == torch.float32
    spec, plain, out = states_after(tiny_mamba2, Speculation(3, 4), script)
    assert sum(out.drafted) > sum(out.accepted)  # rejections happened: their positions were rolled back
    for index in range(tiny_mamba2.num_layers):
        mine, theirs = spec.layers[index], plain.layers[index]
        assert torch.equal(mine.conv_states[0], theirs.conv_states[0]), f"conv state of layer {index}"
        assert torch.equal(mine.recurrent_states[0], theirs.recurrent_states[0]), f"SSM state of layer {index}"


def test_transformer_cache_after_rollback_equals_plain_decoding(tiny_mistral: Backbone) -> None:
    """Every layer holds the plain decode's positions; the lower layers' K/V (decode steps) are its bits,
    the upper layers' (one pass over the round's positions) agree to float32 rounding."""
    layer = 3
    spec, plain, out = states_after(tiny_mistral, Speculation(layer, 4), "partial acceptance")
    assert sum(out.drafted) > sum(out.accepted)
    assert isinstance(TransformerStack(tiny_mistral.model), TransformerStack)
    for index in range(tiny_mistral.num_layers):
        mine, theirs = spec.layers[index], plain.layers[index]
        assert mine.keys.shape == theirs.keys.shape, f"layer {index} holds other positions"
        if index < layer:
            assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values), index
        else:
            torch.testing.assert_close(mine.keys, theirs.keys, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(mine.values, theirs.values, rtol=1e-5, atol=1e-6)


def test_near_ties_are_recorded_at_every_kept_verification(tiny_mistral: Backbone) -> None:
    """With a bound that makes every decision a near tie, each generated token after the first (each one a
    verification's decision) carries one, at its own index."""
    engine = SpeculativeGenerator(tiny_mistral.model, tiny_mistral.tokenizer, speculation=Speculation(2, 3),
                                  max_new_tokens=12, eos_token_ids=[])
    engine.bounds = Bounds(logit_margin=2.0, confidence=0.0)
    out = engine.speculate(PROMPTS[0])
    assert [tie.token for tie in out.near_ties] == list(range(1, len(out.token_ids)))
    assert {tie.layer for tie in out.near_ties} == {tiny_mistral.num_layers}
    engine.bounds = Bounds.for_dtype(torch.float32)
    assert engine.speculate(PROMPTS[0]).token_ids == out.token_ids


def test_full_decode_rounds_draft_nothing() -> None:
    plain = Generation(prompt_ids=[1, 2], token_ids=[5, 6, 7], text="x", exit_layers=[8, 8, 8], stop_reason="eos")
    rounds = full_decode_rounds(plain)
    assert rounds.token_ids == plain.token_ids and rounds.drafted == [0, 0] and rounds.accepted == [0, 0]


@pytest.mark.parametrize(("layer", "tokens", "message"), [(0, 2, "out of range"), (8, 2, "out of range"),
                                                          (3, 0, "at least one token")])
def test_bad_speculation_is_refused(layer: int, tokens: int, message: str, tiny_mistral: Backbone) -> None:
    with pytest.raises(ValueError, match=message):
        SpeculativeGenerator(tiny_mistral.model, tiny_mistral.tokenizer, speculation=Speculation(layer, tokens),
                             max_new_tokens=4)


@pytest.mark.slow
def test_smollm2_speculation_equals_full_on_every_truthfulqa_sample(smollm2: Backbone) -> None:
    """Real weights, the spec row of the lossless layer over the default profile, every embedded TruthfulQA
    question through the decoder the generate rule uses: the full model's tokens on every row (a verification
    near tie checked at batch 1)."""
    from dataclasses import replace

    from dynamax_bench.config import REPO_ROOT
    from dynamax_bench.generation.decoder import Decoder
    from dynamax_bench.generation.tasks import load_samples
    from dynamax_bench.profile_checks import load_profile
    from dynamax_bench.spec import decode_spec, speculative_methods, task_spec

    config = load_profile(REPO_ROOT / "config" / "lossless.yaml")
    (method,) = speculative_methods(config, "smollm2")
    task, samples = load_samples(task_spec(config, "truthfulqa"))
    prompts = [s.prompt for s in samples]
    spec = decode_spec(config, "smollm2", "truthfulqa", method)
    full = replace(decode_spec(config, "smollm2", "truthfulqa", "full"), batch_size=1, prefix_cache=False)
    mine, agreement = Decoder.for_backbone(spec, smollm2).decode(prompts, task.stop_strings, disable_tqdm=True)
    reference, _ = Decoder.for_backbone(full, smollm2).decode(prompts, task.stop_strings, disable_tqdm=True)
    assert len(mine) == len(samples) == 53
    assert [g.token_ids for g in mine] == [g.token_ids for g in reference]
    assert agreement.rows_differing == 0 and not agreement.unexplained
    assert sum(sum(g.accepted) for g in mine) > 0 and sum(sum(g.drafted) for g in mine) > sum(sum(g.accepted) for g in mine)
