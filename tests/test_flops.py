"""FLOPs per block with fvcore: the blocks add up to the whole model, and a layer matches its shapes."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Mamba2Config, Mamba2ForCausalLM

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import layer_stack
from dynamax_bench.classifiers.registry import build_classifier
from dynamax_bench.costs.flops import (
    _Traced,
    backbone_blocks,
    count,
    exit_method_step,
    layer_decode_count,
    layer_prefill_count,
    whole_model_count,
)
from dynamax_bench.costs.lengths import LengthModel, fit_length_model

T = 32  # tokens of the counted prefill


@pytest.fixture(scope="module")
def smol_shaped() -> torch.nn.Module:
    """SmolLM2-135M's layer shapes (width 576, 9 heads, 3 KV heads, MLP 1536), 2 layers, small vocab."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
                         num_hidden_layers=2, vocab_size=512, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def mamba_shaped() -> torch.nn.Module:
    """The default profile's Mamba-2 layer shapes (width 256, 16 heads of 32, state 64), 2 layers."""
    torch.manual_seed(0)
    config = Mamba2Config(hidden_size=256, num_hidden_layers=2, num_heads=16, head_dim=32, expand=2, state_size=64,
                          n_groups=1, conv_kernel=4, chunk_size=64, vocab_size=512, tie_word_embeddings=True)
    return Mamba2ForCausalLM(config).eval()


@pytest.mark.parametrize("name", ["tiny_mistral", "tiny_mamba2", "smol_shaped", "mamba_shaped"])
def test_blocks_sum_to_the_whole_model_count(request: pytest.FixtureRequest, name: str) -> None:
    model = request.getfixturevalue(name)
    model = model.model if isinstance(model, Backbone) else model
    stack = layer_stack(model)
    blocks = backbone_blocks(stack, T)
    ids = torch.randint(0, model.config.vocab_size, (1, T))
    whole = whole_model_count(model, ids)["flops"]
    summed = stack.num_layers * blocks["layer_prefill"]["flops"] + blocks["head_prefill"]["flops"]
    assert summed == pytest.approx(whole, rel=0.01)


def test_transformer_layer_matches_its_shapes(smol_shaped: torch.nn.Module) -> None:
    c = smol_shaped.config
    d, hd = c.hidden_size, c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * hd
    context = T
    blocks = backbone_blocks(layer_stack(smol_shaped), context)
    projections = d * d * 2 + d * kv * 2 + 3 * d * c.intermediate_size  # q, o, k, v, gate/up/down (MACs)
    attention = 2 * c.num_attention_heads * (context + 1) * hd  # one query against the cache and itself
    assert blocks["layer_decode"]["flops"] == pytest.approx(projections + attention, rel=0.05)
    assert blocks["head"]["flops"] == pytest.approx(d * c.vocab_size, rel=0.05)
    assert blocks["fill_partial"]["flops"] == pytest.approx(d * kv * 2, rel=0.05)  # K/V projections only
    assert "aten::scaled_dot_product_attention" not in blocks["layer_decode"]["uncounted"]


def test_mamba2_layer_matches_its_shapes(mamba_shaped: torch.nn.Module) -> None:
    c = mamba_shaped.config
    inner = c.expand * c.hidden_size
    conv_dim = inner + 2 * c.n_groups * c.state_size
    blocks = backbone_blocks(layer_stack(mamba_shaped), T)
    in_proj = c.hidden_size * (2 * inner + 2 * c.n_groups * c.state_size + c.num_heads)
    out_proj = inner * c.hidden_size
    conv = conv_dim * c.conv_kernel
    # the library's recurrent step, each over (heads, head_dim, state): dt*A, exp, dt*B, (dt*B)*x,
    # state*dA, then C.state
    ssm = 6 * c.num_heads * c.head_dim * c.state_size
    assert blocks["layer_decode"]["flops"] == pytest.approx(in_proj + out_proj + conv + ssm, rel=0.05)
    assert blocks["fill_partial"]["flops"] == pytest.approx(blocks["layer_decode"]["flops"], rel=0.05)
    assert blocks["fill_skip"]["flops"] == 0


def test_classifier_and_rule_steps(tiny_mistral: Backbone) -> None:
    stack = layer_stack(tiny_mistral.model)
    d = stack.config.hidden_size
    blocks = backbone_blocks(stack, 8)
    calm = exit_method_step("calm", {}, stack, blocks, 8)
    # the linear layer (d x 2) after the input standardisation (one multiply per feature)
    assert calm["flops"] == pytest.approx(d * 2 + d, rel=0.05) and calm["parameters"] == 2 * d + 2
    ffn = exit_method_step("ffn", {}, stack, blocks, 8)
    assert ffn["flops"] == pytest.approx(d * 4 * d + 4 * d * 2, rel=0.05)
    softmax = exit_method_step("maxsoftmax", {}, stack, blocks, 8)
    assert softmax["flops"] > blocks["head"]["flops"]  # reads the whole LM head at every exit



def test_mamba_classifier_step_is_one_recurrent_step_of_its_mixer(tiny_mistral: Backbone) -> None:
    """The `mamba` kind's decision per token and exit: standardisation, RMSNorm and one recurrent mixer
    step with its state (in_proj, the conv window, the SSM update, out_proj to 2), not a pass over a
    prompt from a fresh state (the chunked scan, about 360x more at this width)."""
    stack = layer_stack(tiny_mistral.model)
    d = stack.config.hidden_size
    step = exit_method_step("mamba", {}, stack, backbone_blocks(stack, 8), 8)
    c = build_classifier("mamba", d, {}).config
    inner = c.expand * d
    in_proj = d * (2 * inner + 2 * c.n_groups * c.state_size + c.num_heads)
    conv = (inner + 2 * c.n_groups * c.state_size) * c.conv_kernel
    ssm = 6 * c.num_heads * c.head_dim * c.state_size
    assert step["by_operator"]["linear"] == in_proj + inner * 2  # the projections, exactly
    assert step["flops"] == pytest.approx(d + in_proj + conv + ssm + inner * 2, rel=0.05)
    assert step["flops"] == 33_093  # fvcore's count at d = 64 with the default options (MACs)
    assert step["prefill"]["form"] == "chunked" and step["parameters"] > 0

@pytest.mark.parametrize("name", ["tiny_mistral", "tiny_mamba2"])
def test_length_models_give_fvcores_count_at_lengths_they_never_saw(request: pytest.FixtureRequest, name: str) -> None:
    """A prompt of 77 tokens (two Mamba-2 chunks of 64, the second padded) and a decode step after
    150 cached positions, against fvcore's own counts at those lengths."""
    stack = layer_stack(request.getfixturevalue(name).model)
    blocks = backbone_blocks(stack, T)
    prefill, decode = (LengthModel.from_dict(blocks[b]["per_length"]) for b in ("layer_prefill", "layer_decode"))
    assert prefill.exact and decode.exact
    assert prefill(T) == blocks["layer_prefill"]["flops"] and decode(T) == blocks["layer_decode"]["flops"]
    assert prefill(77) == layer_prefill_count(stack, 77)["flops"]
    assert decode(150) == layer_decode_count(stack, 150)["flops"]
    if name == "tiny_mistral":  # attention grows with the length; a Mamba-2 step does not
        assert decode(150) > decode(T) and prefill(77) > 77 / T * prefill(T)
    else:
        assert decode(150) == decode(T)


def test_stateful_classifier_prompt_pass_is_an_exact_length_model(tiny_mamba2: Backbone) -> None:
    stack = layer_stack(tiny_mamba2.model)
    blocks = backbone_blocks(stack, 8)
    step = exit_method_step("mamba", {"head_dim": 16, "chunk_size": 16}, stack, blocks, 8)
    model = LengthModel.from_dict(step["prefill"])
    clf = build_classifier("mamba", 64, {"head_dim": 16, "chunk_size": 16}).eval().requires_grad_(False)
    direct = count(_Traced(clf, lambda h: clf(h, clf.new_state())), (torch.randn(1, 41, 64),))["flops"]
    assert model.exact and model.chunk == 16 and model(41) == direct
    assert "prefill" not in exit_method_step("calm", {}, stack, blocks, 8)  # stateless: no prompt pass


def test_a_length_model_that_misses_its_checks_says_so() -> None:
    """A count the form cannot express (a cube) is flagged, with its error, not passed off as exact."""
    cube = fit_length_model(lambda t: t**3, "polynomial", degree=2, around=50)
    assert not cube.exact and cube.max_relative_error > 0.01
    square = fit_length_model(lambda t: 7 + 3 * t * t, "polynomial", degree=2, around=50)
    assert square.exact and square(1000) == 3_000_007
    with pytest.raises(ValueError, match="singular"):
        fit_length_model(lambda t: t, "chunked", chunk=1, around=5)
