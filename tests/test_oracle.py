"""Oracle labels: hand-built predictions with known ranks, and the store the engine agrees with."""

from __future__ import annotations

import pytest
import torch

from dynamax_bench.artefacts import combined_digest, safetensors_digest
from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.engine import layer_stack
from dynamax_bench.classifiers.oracle import OracleStore, document_pass, exit_ranks, extract_oracle


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


def test_sharded_store_reads_back_every_document_as_the_pass_produced_it(tmp_path, tiny_mamba2: Backbone) -> None:
    """Documents written across several shards come back by index exactly as `document_pass` gave
    them (hidden states and ranks), with the offsets, topics and label rates in the metadata."""
    from dynamax_bench.files import write_jsonl

    corpus = tmp_path / "corpus.jsonl"
    texts = [f"Document {i}: the sea is blue and the sky is grey." + " More words." * i for i in range(5)]
    write_jsonl(corpus, [{"id": str(i), "text": t, "topic": "sea" if i % 2 else None} for i, t in enumerate(texts)])
    meta = extract_oracle(tiny_mamba2.model.name_or_path, corpus, tmp_path / "oracle", exits={"count": 4},
                          max_length=64, shard_mb=0.01)
    store = OracleStore(tmp_path / "oracle")
    assert store.exits == meta["exit_positions"] == [4, 5, 6, 7]
    assert meta["num_shards"] >= 3 and len(list((tmp_path / "oracle").glob("shard-*.safetensors"))) == meta["num_shards"]
    assert store.offsets[-1] == meta["num_tokens"] and store.num_documents == 5
    assert [d["topic"] for d in meta["documents"]] == [None, "sea", None, "sea", None]
    stack = layer_stack(tiny_mamba2.model)
    positives = 0
    for d, text in enumerate(texts):
        ids = tiny_mamba2.tokenizer(text, return_tensors="pt").input_ids[:, :64]
        hiddens, ranks = document_pass(stack, ids, store.exits)
        assert store.length(d) == ids.shape[1]
        for e in store.exits:
            torch.testing.assert_close(store.hidden(e, d), hiddens[e][0], rtol=0, atol=0)
            assert torch.equal(store.ranks(e, d), ranks[e])
        positives += int((store.ranks(5, d) < 3).sum())
        assert (store.labels(5, d, 5) >= store.labels(5, d, 1)).all()  # top-k relaxes
    assert meta["positive_rate"]["top3"]["5"] == positives / meta["num_tokens"]
    # every file's digest is recorded as it is written, so the store is not hashed again for each classifier
    files = sorted(p.name for p in (tmp_path / "oracle").glob("*.safetensors"))
    assert sorted(meta["digests"]) == files
    assert all(meta["digests"][name] == safetensors_digest(tmp_path / "oracle" / name) for name in files)
    assert store.digest == combined_digest({name: safetensors_digest(tmp_path / "oracle" / name) for name in files})


def test_store_in_bfloat16_and_a_missing_store_is_named(tmp_path, tiny_mistral: Backbone) -> None:
    from dynamax_bench.files import write_jsonl

    write_jsonl(tmp_path / "corpus.jsonl", [{"id": "a", "text": "one two three four"}])
    extract_oracle(tiny_mistral.model.name_or_path, tmp_path / "corpus.jsonl", tmp_path / "oracle", exits=None,
                   max_length=16, store_dtype="bfloat16")
    store = OracleStore(tmp_path / "oracle")
    assert store.hidden(store.exits[0], 0).dtype == torch.float32  # read back widened
    assert store.meta["store_dtype"] == "bfloat16"
    with pytest.raises(FileNotFoundError, match="extract_oracle"):
        OracleStore(tmp_path / "nowhere")
