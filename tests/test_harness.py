"""The `dynamax` lm-eval model: the same text as the engine and as model.generate."""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.registry import get_model

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import EarlyExitGenerator, Strategy
from dynamax_bench.lmeval.model import DynamaxLM, build_requests
from dynamax_bench.generation.tasks import get_task


@pytest.mark.parametrize("backbone_name", ["tiny_mistral", "tiny_mamba2"])
def test_full_method_equals_engine_and_model_generate(request: pytest.FixtureRequest, backbone_name: str) -> None:
    backbone: Backbone = request.getfixturevalue(backbone_name)
    task = get_task("triviaqa")
    samples = task.load({"kind": "embedded"}, limit=3, num_fewshot=1)
    lm = get_model("dynamax")(backbone=backbone.model.name_or_path, method="full", max_gen_toks=8, device="cpu")
    assert isinstance(lm, DynamaxLM)
    texts = lm.generate_until(build_requests(task, samples, 8))
    engine = EarlyExitGenerator(backbone.model, backbone.tokenizer, exit_layers=lm.exit_positions, max_new_tokens=8,
                                stop_strings=task.stop_strings)
    tok = backbone.tokenizer
    for sample, text in zip(samples, texts):
        assert text == engine.generate(sample.prompt, Strategy.full()).text
        ids = tok(sample.prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = backbone.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                          do_sample=False, pad_token_id=tok.eos_token_id)
        reference = engine.truncate(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        assert text == reference


def test_loglikelihood_says_why_it_is_not_supported(tiny_mistral: Backbone) -> None:
    lm = DynamaxLM(backbone=tiny_mistral.model.name_or_path, device="cpu")
    with pytest.raises(NotImplementedError, match="only generates"):
        lm.loglikelihood([])


def test_model_args_name_the_method_by_parts(tiny_mamba2: Backbone) -> None:
    lm = DynamaxLM(backbone=tiny_mamba2.model.name_or_path, kind="maxsoftmax", policy="skip", threshold=0.5,
                   device="cpu")
    assert lm.method.name == "ee-maxsoftmax-skip-t0.5"
    with pytest.raises(ValueError, match="either method"):
        DynamaxLM(backbone=tiny_mamba2.model.name_or_path, method="oracle", kind="calm", device="cpu")


def test_batching_in_bfloat16_is_refused_before_the_weights_load(tmp_path) -> None:
    """The folder does not exist: the refusal must come from the arguments, not from loading."""
    with pytest.raises(ValueError, match=r"dtype=bfloat16 with batch size 16.*measured for \['float32'\].*--batch_size 1"):
        DynamaxLM(backbone=str(tmp_path / "absent"), dtype="bfloat16", batch_size=16, device="cpu")
