"""generation/decoder.py: which path decodes a spec, that a job's decoders decoded together equal each
alone, the one-line refusals, and that a batched run's row that differs from its batch-1 re-decode
takes the batch-1 output, which is what the generations file gets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import BatchedGenerator, NearTie
from dynamax_bench.generation.decoder import Decoder, decode_each
from dynamax_bench.generation.generate import generate_cells, read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=3, num_fewshot=0, fewshot_source=None, options={})
CHANGED = 1  # the row the batch "changes"


PROMPTS = ["The three primary colours are", "def fibonacci(n):", "Once"]


def spec(batch_size: int, method: str = "full", prefix_cache: bool = False, dtype: str = "float32") -> DecodeSpec:
    return DecodeSpec(backbone="tiny_mistral", family="transformer", task="triviaqa", method=parse_method(method),
                      exits={"count": 2}, repetition_penalty=1.0, max_new_tokens=4, batch_size=batch_size,
                      prefix_cache=prefix_cache, dtype=dtype, device="cpu", seed=0)


def tokens(generations: list) -> list[list[int]]:
    return [g.token_ids for g in generations]


def test_the_batched_engine_decodes_unless_batch_one_without_prefix_cache_or_speculating(
        tiny_mistral: Backbone) -> None:
    assert not Decoder.for_backbone(spec(1), tiny_mistral).batched
    assert Decoder.for_backbone(spec(2), tiny_mistral).batched
    assert Decoder.for_backbone(spec(1, prefix_cache=True), tiny_mistral).batched
    assert not Decoder.for_backbone(spec(2, "spec-e4-k3"), tiny_mistral).batched  # its rows accept unlike drafts
    engine = Decoder.for_backbone(spec(2), tiny_mistral).batched_generator([], 4)
    assert (engine.batch_size, engine.share_prefixes) == (2, False)
    engine = Decoder.for_backbone(spec(2), tiny_mistral).batched_generator([], 4, batch_size=5, share_prefixes=True)
    assert (engine.batch_size, engine.share_prefixes) == (5, True)


def test_a_jobs_decoders_decoded_together_equal_each_alone_at_batch_one(tiny_mistral: Backbone) -> None:
    decoders = [Decoder.for_backbone(spec(2, method), tiny_mistral) for method in ("full", "prune4")]
    each = decode_each(decoders, PROMPTS, [], max_new_tokens=5, disable_tqdm=True)
    for decoder, (generations, agreement) in zip(decoders, each):
        alone = [decoder.generator([], 5).generate(prompt, decoder.strategy) for prompt in PROMPTS]
        assert tokens(generations) == tokens(alone) and [g.exit_layers for g in generations] == [
            g.exit_layers for g in alone]
        assert agreement.rows == len(PROMPTS) and agreement.bounds is not None
    assert tokens(each[0][0]) != tokens(each[1][0])  # two strategies, not one decoded twice
    batch_one = Decoder.for_backbone(spec(1), tiny_mistral)
    generations, agreement = batch_one.decode(PROMPTS, [], disable_tqdm=True)
    # the reference path at the spec's own length (4): greedy, so the first 4 tokens of the 5 above
    assert agreement is None and tokens(generations) == [t[:4] for t in tokens(each[0][0])]
    assert max(map(len, tokens(generations))) == 4


def test_an_engine_is_kept_per_length_and_stop_strings(tiny_mistral: Backbone) -> None:
    decoder = Decoder.for_backbone(spec(2), tiny_mistral)
    assert decoder.generator([], 3) is decoder.generator([], 3)
    assert decoder.generator([], 3) is not decoder.generator([], 6)
    assert decoder.generator([], 3) is not decoder.generator(["x"], 3)
    assert decoder.batched_generator([], 3) is not decoder.generator([], 3)
    short, long = (tokens(decoder.generate(PROMPTS, [], max_new_tokens=n, disable_tqdm=True)) for n in (2, 6))
    assert [len(t) for t in short] == [2] * 3 and [t[:2] for t in long] == short and max(map(len, long)) == 6


def test_decoders_that_cannot_share_a_call_are_refused(tiny_mistral: Backbone, backbone_root: Path) -> None:
    with pytest.raises(ValueError, match="need one device, dtype and kernel setting"):
        Decoder.load_all([spec(1), spec(1, dtype="bfloat16")], backbone_root / "tiny_mistral")
    with pytest.raises(ValueError, match="decode_each needs decoders of one loaded backbone .* got 2 settings"):
        decode_each([Decoder.for_backbone(spec(b), tiny_mistral) for b in (1, 2)], PROMPTS, [])
    with pytest.raises(ValueError, match="a spec-\\* method decodes alone"):
        decode_each([Decoder.for_backbone(spec(1, m), tiny_mistral) for m in ("spec-e4-k3", "full")], PROMPTS, [])
    with pytest.raises(ValueError, match="full is not a spec-\\* method"):
        Decoder.for_backbone(spec(1), tiny_mistral).speculative_generator([], 4)


def test_a_batched_row_that_differs_at_no_near_tie_stops_the_run(tiny_mistral: Backbone,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 1 met a near tie at its last token, so it is re-decoded, but it differs at its first: no tie
    explains that, so the batched engine has a bug and nothing may be written."""
    original = BatchedGenerator.generate_each

    def flip_without_a_tie(self, prompts, strategies, **kwargs):
        each = original(self, prompts, strategies, **kwargs)
        row = each[0][CHANGED]
        tie = NearTie(token=len(row.token_ids) - 1, kind="logit_margin", layer=8, value=1e-6)
        each[0][CHANGED] = dataclasses.replace(row, token_ids=[row.token_ids[0] + 1, *row.token_ids[1:]],
                                               near_ties=[tie])
        return each

    monkeypatch.setattr(BatchedGenerator, "generate_each", flip_without_a_tie)
    with pytest.raises(RuntimeError, match="differs from batch 1 at no near tie in rows \\[1\\] \\(first tokens "
                                           "\\[0\\]\\): a bug of the batched engine"):
        Decoder.for_backbone(spec(2), tiny_mistral).decode(PROMPTS, [], disable_tqdm=True)


def test_a_row_the_batch_changed_gets_its_batch_one_output_in_the_file(
        tiny_mistral: Backbone, backbone_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched engine returns row 1 with another second token and a near tie recorded there (what a
    flipped decision looks like); the re-decode at batch 1 differs, so the file must hold batch 1's row."""
    original = BatchedGenerator.generate_each

    def flip_one_row(self, prompts, strategies, **kwargs):
        each = original(self, prompts, strategies, **kwargs)
        row = each[0][CHANGED]
        tokens = [row.token_ids[0], row.token_ids[1] + 1, *row.token_ids[2:]]
        each[0][CHANGED] = dataclasses.replace(row, token_ids=tokens, text="(the batch's output)",
                                               near_ties=[NearTie(token=1, kind="logit_margin", layer=8, value=1e-6)])
        return each

    monkeypatch.setattr(BatchedGenerator, "generate_each", flip_one_row)
    out = tmp_path / "full.jsonl"
    generate_cells([spec(batch_size=2)], TASK, backbone_root / "tiny_mistral", [out])
    header, records = read_generations(out)

    task, samples = load_samples(TASK)
    expected = Decoder.for_backbone(spec(batch_size=1), tiny_mistral).generate([s.prompt for s in samples],
                                                                               task.stop_strings)
    assert [r["token_ids"] for r in records] == [g.token_ids for g in expected]
    assert [r["output"] for r in records] == [g.text for g in expected]
    assert records[CHANGED]["output"] != "(the batch's output)"
    agreement = header["agreement"]
    assert (agreement["rows_redecoded"], agreement["rows_differing"], agreement["unexplained"]) == (1, 1, 0)
    assert agreement["differences"][0]["row"] == CHANGED and agreement["differences"][0]["token"] == 1
