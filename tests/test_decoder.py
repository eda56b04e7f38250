"""generation/decoder.py: a batched run's row that differs from its batch-1 re-decode takes the batch-1
output, and that output is what the generations file gets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import BatchedGenerator, NearTie
from dynamax_bench.generation.decoder import Decoder
from dynamax_bench.generation.generate import generate_cells, read_generations
from dynamax_bench.generation.tasks import load_samples
from dynamax_bench.spec import DecodeSpec, TaskSpec, parse_method

TASK = TaskSpec(name="triviaqa", source={"kind": "embedded"}, limit=3, num_fewshot=0, fewshot_source=None, options={})
CHANGED = 1  # the row the batch "changes"


def spec(batch_size: int) -> DecodeSpec:
    return DecodeSpec(backbone="tiny_mistral", family="transformer", task="triviaqa", method=parse_method("full"),
                      exits={"count": 2}, repetition_penalty=1.0, max_new_tokens=4, batch_size=batch_size,
                      prefix_cache=False, dtype="float32", device="cpu", seed=0)


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
