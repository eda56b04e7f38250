"""Oracle labels: hand-built predictions with known ranks, and the store the engine agrees with."""

from __future__ import annotations

import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import layer_stack
from dynamax_bench.classifiers.oracle import OracleStore, document_pass, exit_ranks, extract_oracle, split_documents


class LogitStack:
    """A stand-in whose 'head' is the identity: hidden states ARE the logits, so every
    exit's prediction and the full model's ranking are set by hand."""

    def head_all(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float()


def test_ranks_and_topk_labels_match_a_hand_built_case() -> None:
    # Full model logits over a 4-token vocabulary at 3 positions: rankings 0>1>2>3, 3>2>1>0, 1>0>3>2.
    final = torch.tensor([[[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 1.0, 2.0]]])
    # Exit predictions (top-1): tokens 0, 1, 2 at the three positions.
    early = torch.tensor([[[9.0, 0, 0, 0], [0, 9.0, 0, 0], [0, 0, 9.0, 0]]])
    ranks = exit_ranks(LogitStack(), {3: early}, final)[3]
    assert ranks.tolist() == [0, 2, 3]  # token 0 is full top-1; token 1 is 3rd; token 2 is last
    assert (ranks < 1).long().tolist() == [1, 0, 0]  # k=1: strict agreement
    assert (ranks < 3).long().tolist() == [1, 1, 0]  # k=3
    assert (ranks < 4).long().tolist() == [1, 1, 1]


def test_last_exit_of_a_model_matches_itself(tiny_mistral: Backbone) -> None:
    """At an 'exit' after every layer the label must be 1 everywhere (the model agrees with itself)."""
    stack = layer_stack(tiny_mistral.model)
    ids = tiny_mistral.tokenizer("one two three four five six", return_tensors="pt").input_ids
    hiddens, ranks = document_pass(stack, ids, [4, stack.num_layers])
    assert ranks[stack.num_layers].tolist() == [0] * ids.shape[1]
    # The stored hidden state is the residual stream the HF forward reports after 4 layers.
    with torch.no_grad():
        reference = tiny_mistral.model(ids, output_hidden_states=True).hidden_states[4]
    torch.testing.assert_close(hiddens[4], reference, atol=1e-5, rtol=1e-4)


def test_split_holds_out_the_last_documents() -> None:
    assert split_documents(10, 0.2) == {"train": list(range(8)), "heldout": [8, 9]}
    assert split_documents(3, 0.01)["heldout"] == [2]


def test_store_round_trip(tmp_path, smoke_config: dict, tiny_mamba2: Backbone) -> None:
    from dynamax_bench.files import write_jsonl

    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"id": str(i), "text": f"Document {i}: the sea is blue and the sky is grey."} for i in range(5)])
    meta = extract_oracle(smoke_config, tiny_mamba2.model.name_or_path, corpus, tmp_path / "oracle")
    store = OracleStore(tmp_path / "oracle")
    assert store.exits == meta["exit_layers"] == [4, 5, 6, 7]
    assert store.offsets[-1] == meta["num_tokens"] and len(store.offsets) == 6
    assert store.documents("heldout") == [4]
    d = store.hidden(5, 2)
    assert d.shape == (store.offsets[3] - store.offsets[2], tiny_mamba2.model.config.hidden_size)
    assert set(store.labels(5, 2, 1).tolist()) <= {0, 1}
    assert (store.labels(5, 2, 5) >= store.labels(5, 2, 1)).all()  # top-k relaxes
