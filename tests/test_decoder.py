"""generation/decoder.py: which path decodes a spec, that a job's decoders decoded together equal each
alone, the one-line refusals, and that a batched run's row that differs from its batch-1 re-decode
takes the batch-1 output, which is what the generations file gets."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from dynamax_bench.backbones.kernels import KernelsMissing
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.checkpoints import save_classifiers
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.engine import BatchedGenerator, NearTie
from dynamax_bench.generation.decoder import Decoder, decode_each
from dynamax_bench.generation.generate import generate_cells, read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=3, num_fewshot=0, fewshot_source=None, options={})
CHANGED = 1  # the row the batch "changes"


PROMPTS = ["The three primary colours are", "def fibonacci(n):", "Once"]


EXITS = [4, 7]  # {"count": 2} on tiny_mistral's 8 layers: L/2 to L - 1


def spec(batch_size: int, method: str = "full", prefix_cache: bool = False, dtype: str = "float32",
         kernels: str = "auto", penalty: float = 1.0) -> DecodeSpec:
    return DecodeSpec(backbone="tiny_mistral", family="transformer", task="triviaqa", method=parse_method(method),
                      exits={"count": 2}, repetition_penalty=penalty, max_new_tokens=4, batch_size=batch_size,
                      prefix_cache=prefix_cache, dtype=dtype, device="cpu", seed=0, mamba_kernels=kernels)


@pytest.fixture(scope="module")
def classifiers(smoke_config: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded, untrained `mamba` and `calm` classifiers at tiny_mistral's exits, in one folder as `distill`
    writes them (unfitted)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("classifiers")
    for kind in ("mamba", "calm"):
        options = smoke_config["classifiers"]["options"].get(kind, {})
        save_classifiers(folder / f"{kind}.safetensors", [build_classifier(kind, 64, options) for _ in EXITS], EXITS, {})
    return folder


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
    penalised = Decoder.for_backbone(spec(2, penalty=1.3), tiny_mistral)
    for engine in (penalised.generator(["ation"], 3), penalised.batched_generator(["ation"], 3)):
        assert engine.stop_strings == ("ation",)
        assert [p.penalty for p in engine.processors if isinstance(p, RepetitionPenaltyLogitsProcessor)] == [1.3]
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
    with pytest.raises(ValueError, match="^decode_each needs decoders of one loaded backbone .* got 2 settings"):
        decode_each([Decoder.for_backbone(spec(b), tiny_mistral) for b in (1, 2)], PROMPTS, [])
    with pytest.raises(ValueError, match="got 2 settings"):  # the same weights, loaded twice: not one backbone
        decode_each([Decoder.for_backbone(spec(2), tiny_mistral),
                     Decoder.load(spec(2), backbone_root / "tiny_mistral")], PROMPTS, [])
    with pytest.raises(ValueError, match="^a spec-\\* method decodes alone \\(batch 1\\): give decode_each one"):
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
                                           "\\[0\\]\\): a bug of the batched engine; set generation.batch_size: 1 "
                                           "and generation.prefix_cache: false to decode on the reference path$"):
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


def test_load_reads_the_specs_dtype_and_classifiers_and_shares_them(backbone_root: Path, classifiers: Path) -> None:
    ee = [spec(1, "ee-mamba-copy-t0.5"), spec(1, "ee-mamba-copy-t0.9")]
    one, other = Decoder.load_all(ee, backbone_root / "tiny_mistral", classifiers)
    assert sorted(one.strategy.rule.classifiers) == EXITS == one.exit_positions
    assert all(one.strategy.rule.classifiers[p] is other.strategy.rule.classifiers[p] for p in EXITS)  # loaded once
    assert Decoder.load(ee[0], backbone_root / "tiny_mistral", classifiers).strategy.rule.threshold == 0.5
    assert Decoder.load(spec(1, dtype="bfloat16"), backbone_root / "tiny_mistral").backbone.model.dtype == torch.bfloat16
    # the stateful classifier runs a Mamba2Mixer: `required` kernels are checked on it, not only the backbone
    with pytest.raises(KernelsMissing):
        Decoder.load(spec(1, "ee-mamba-copy-t0.5", kernels="required"), backbone_root / "tiny_mistral", classifiers)
    with pytest.raises(KernelsMissing):  # every decoder's classifiers are checked, the calm ones last here
        Decoder.load_all([spec(1, f"ee-{kind}-copy-t0.5", kernels="required") for kind in ("mamba", "calm")],
                         backbone_root / "tiny_mistral", classifiers)
    assert Decoder.load(spec(1, kernels="required"), backbone_root / "tiny_mistral").exit_positions == EXITS


def test_classifiers_at_other_exits_are_refused(smoke_config: dict, tiny_mistral: Backbone, tmp_path: Path) -> None:
    path = tmp_path / "mamba.safetensors"
    options = smoke_config["classifiers"]["options"]["mamba"]
    save_classifiers(path, [build_classifier("mamba", 64, options) for _ in (3, 6)], [3, 6], {})
    with pytest.raises(ValueError, match="classifiers sit at layers \\[3, 6\\] but the exits are \\[4, 7\\]; retrain"):
        Decoder.for_backbone(spec(1, "ee-mamba-copy-t0.5"), tiny_mistral, path)


def test_batch1_is_the_reference_path_the_latency_rule_times(tiny_mistral: Backbone) -> None:
    decoder = Decoder.for_backbone(spec(2, "prune4"), tiny_mistral)
    marks: list[int] = []
    out = decoder.batch1(["x"], 5)(PROMPTS[0], on_first_token=lambda: marks.append(1))
    reference = decoder.generator(["x"], 5).generate(PROMPTS[0], decoder.strategy)
    assert out.token_ids == reference.token_ids and out.exit_layers == reference.exit_layers and marks == [1]
    assert decoder.batch1(["x"], 5) is not None and len(decoder.batch1([], 2)(PROMPTS[1]).token_ids) == 2
    speculating = Decoder.for_backbone(spec(1, "spec-e4-k3"), tiny_mistral)
    drafted = speculating.batch1([], 5)(PROMPTS[0])
    assert drafted.token_ids == Decoder.for_backbone(spec(1), tiny_mistral).batch1([], 5)(PROMPTS[0]).token_ids
    assert sum(drafted.drafted) > 0  # it speculated: the latency rule times the method, not the full model


def test_a_decode_says_what_it_decoded_and_re_decoded(tiny_mistral: Backbone, caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture) -> None:
    decoders = [Decoder.for_backbone(spec(2, method), tiny_mistral) for method in ("full", "prune4")]
    with caplog.at_level(logging.INFO, logger="dynamax_bench.generation.decoder"):
        started = time.perf_counter()
        each = decode_each(decoders, PROMPTS, [], max_new_tokens=5)
        elapsed = time.perf_counter() - started
    rows = sum(agreement.rows_redecoded for _, agreement in each)
    tokens_redecoded = sum(agreement.tokens_redecoded for _, agreement in each)
    [summary] = [r for r in caplog.records if r.getMessage().startswith("batched decode")]
    batched, redecoding = summary.args[0], summary.args[2]
    assert 0 < batched and 0 <= redecoding and batched + redecoding <= elapsed
    assert summary.getMessage().endswith(f"for the 2 strategies of the call; re-decoding their near-tie rows at "
                                         f"batch 1 {redecoding:.1f} s ({rows} rows, {tokens_redecoded} tokens)")
    checked = [r.getMessage() for r in caplog.records if ": batch 2, prefix cache False:" in r.getMessage()]
    assert checked == [f"decode {m}: batch 2, prefix cache False: {a.rows_with_near_ties} of 3 rows met a near tie, "
                       f"{a.rows_differing} differed from batch 1 and took their batch-1 output"
                       for m, (_, a) in zip(("full", "prune4"), each)]
    assert "decode full + decode prune4" in capsys.readouterr().err  # the progress bar names both
    Decoder.for_backbone(spec(1), tiny_mistral).generate(PROMPTS, [])
    assert "decode full" in (err := capsys.readouterr().err) and re.search("sample/s|s/sample", err)
    Decoder.for_backbone(spec(1), tiny_mistral).generate(PROMPTS, [], disable_tqdm=True)
    decode_each(decoders, PROMPTS, [], max_new_tokens=2, disable_tqdm=True)
    assert capsys.readouterr().err == ""


def test_a_spec_method_decodes_at_batch_one_and_says_what_it_accepted(tiny_mistral: Backbone,
                                                                       caplog: pytest.LogCaptureFixture,
                                                                       capsys: pytest.CaptureFixture) -> None:
    speculating = Decoder.for_backbone(spec(1, "spec-e4-k3"), tiny_mistral)
    with caplog.at_level(logging.INFO, logger="dynamax_bench.generation.decoder"):
        generations, agreement = speculating.decode(PROMPTS, [], max_new_tokens=6)
    full = Decoder.for_backbone(spec(1), tiny_mistral).generate(PROMPTS, [], max_new_tokens=6, disable_tqdm=True)
    assert tokens(generations) == tokens(full) and agreement.rows == 3 and agreement.bounds is not None
    accepted, drafted = sum(sum(g.accepted) for g in generations), sum(sum(g.drafted) for g in generations)
    assert drafted > 0
    assert [r.getMessage() for r in caplog.records] == [
        f"decode spec-e4-k3: {accepted} of {drafted} drafts accepted; {agreement.rows_with_near_ties} of 3 rows met a "
        f"near tie in a verification, {agreement.rows_differing} differed from the full model's plain decode and "
        "took its output"]
    assert "decode spec-e4-k3" in (err := capsys.readouterr().err) and re.search("sample/s|s/sample", err)
    speculating.decode(PROMPTS, [], max_new_tokens=6, disable_tqdm=True)
    assert capsys.readouterr().err == ""


def test_rows_calibrated_to_one_threshold_decode_once_and_each_writes_its_own_file(
        tiny_mistral: Backbone, backbone_root: Path, classifiers: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two targets that calibrated to one threshold are one decode: the job runs it once, and each row's file is
    what that row alone would write (its own spec in the header, the same records)."""
    from dynamax_bench.generation import decoder as decoder_module

    def calibrated(name: str, threshold: float) -> DecodeSpec:
        row = spec(2, name)
        return dataclasses.replace(row, method=dataclasses.replace(row.method, threshold=threshold, certified=True))

    rows = [calibrated("ee-calm-copy-c0.9", 0.5), calibrated("ee-calm-copy-c0.95", 0.5), calibrated("ee-calm-copy-p6", 0.2)]
    calls = []
    original = decoder_module.decode_each
    monkeypatch.setattr(decoder_module, "decode_each",
                        lambda decoders, *a, **k: calls.append([d.spec.method.name for d in decoders]) or
                        original(decoders, *a, **k))
    together = [tmp_path / f"{row.method.name}.jsonl" for row in rows]
    generate_cells(rows, TASK, backbone_root / "tiny_mistral", together, classifiers)
    assert calls == [["ee-calm-copy-c0.9", "ee-calm-copy-p6"]]
    for row, path in zip(rows, together):
        alone = tmp_path / f"alone-{row.method.name}.jsonl"
        generate_cells([row], TASK, backbone_root / "tiny_mistral", [alone], classifiers)
        assert read_generations(path) == read_generations(alone)
        assert read_generations(path)[0]["decode_spec"]["method"]["name"] == row.method.name
