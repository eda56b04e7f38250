"""The `extract_oracle` rule: one backbone pass over the corpus, shared by every classifier kind.

For every corpus token t and exit position e it stores the hidden state the exit classifier
reads (the residual stream after e layers, exactly what the engine hands the classifier) and
the rank of the exit's greedy token among the full model's logits at t. A label for any top-k
relaxation is then `rank < k` (k=1: strict agreement), so changing k needs no new pass.

The store is written in shards as the pass produces it (a 7B backbone's store is tens of GB),
and read back one document at a time through safetensors' lazy `safe_open`, so neither rule
ever holds more than about one shard. Store layout (a folder):
  shard-<n>.safetensors  hidden.<layer> (n, d) in the store dtype and rank.<layer> (n,) int32 per
                         exit, for a run of whole documents
  index.safetensors      offsets (D+1,) int64: tokens of document i are offsets[i]:offsets[i+1];
                         shard_documents (S+1,) int64: shard s holds documents
                         shard_documents[s]:shard_documents[s+1]
  oracle.json            exit layers, widths, per-document id and topic, label rates for several k,
                         and the digest of every file above (computed once, as each is written: a
                         paper-scale store is too large to hash again for every classifier)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.artefacts import combined_digest, safetensors_digest
from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine.stacks import LayerStack, layer_stack
from dynamax_bench.files import atomic_dir, read_json, read_jsonl, write_json
from dynamax_bench.provenance import environment

log = logging.getLogger(__name__)

REPORTED_K = (1, 3, 5, 10)
# Hidden states dominate the store: tokens x exits x width. bfloat16 halves it at 7B widths.
STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INDEX_FILE = "index.safetensors"
META_FILE = "oracle.json"


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


def exit_ranks(stack: LayerStack, hiddens: dict[int, Tensor], final: Tensor) -> dict[int, Tensor]:
    """Rank (0 = top-1) of each exit's greedy token among the full model's logits, per position.

    hiddens: {exit layer: (1, T, d)}; final: the last layer's output (1, T, d).
    """
    full_logits = stack.head_all(final)[0]  # (T, V)
    ranks = {}
    for layer, hidden in hiddens.items():
        exit_top1 = stack.head_all(hidden)[0].argmax(dim=-1)  # (T,)
        chosen = full_logits.gather(1, exit_top1[:, None])  # (T, 1)
        ranks[layer] = (full_logits > chosen).sum(dim=-1).to(torch.int32)
    return ranks


@torch.inference_mode()
def document_pass(stack: LayerStack, input_ids: Tensor, exits: list[int]) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Run one document through every layer; hidden states at the exits and their ranks."""
    cache = stack.new_cache()
    hidden = stack.embed(input_ids)
    inputs = stack.step_inputs(hidden, cache, torch.ones_like(input_ids))
    hiddens = {}
    for index in range(stack.num_layers):
        hidden = stack.layer(index, hidden, cache, inputs)
        if index + 1 in exits:
            hiddens[index + 1] = hidden
    return hiddens, exit_ranks(stack, hiddens, hidden)


class ShardWriter:
    """Buffers whole documents and writes a shard whenever the buffer reaches `shard_bytes`."""

    def __init__(self, folder: Path, exits: list[int], shard_bytes: int) -> None:
        self.folder, self.exits, self.shard_bytes = folder, exits, shard_bytes
        self.hidden: dict[int, list[Tensor]] = {e: [] for e in exits}
        self.rank: dict[int, list[Tensor]] = {e: [] for e in exits}
        self.buffered = 0
        self.shard_documents = [0]  # first document of every shard, then the end
        self.digests: dict[str, str] = {}  # file name -> digest, as each shard is written
        self.documents = 0

    def add(self, hiddens: dict[int, Tensor], ranks: dict[int, Tensor]) -> None:
        """One document: {exit: (T, d)} in the store dtype, {exit: (T,)} int32, on the CPU."""
        for e in self.exits:
            self.hidden[e].append(hiddens[e])
            self.rank[e].append(ranks[e])
            self.buffered += hiddens[e].nbytes + ranks[e].nbytes
        self.documents += 1
        if self.buffered >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if self.documents == self.shard_documents[-1]:
            return
        tensors = {}
        for e in self.exits:  # each exit's parts are freed as soon as they are joined: ~1 shard, not 2
            tensors[f"hidden.{e}"], self.hidden[e] = torch.cat(self.hidden[e]), []
            tensors[f"rank.{e}"], self.rank[e] = torch.cat(self.rank[e]), []
        path = self.folder / shard_name(len(self.shard_documents) - 1)
        save_file(tensors, str(path))
        self.digests[path.name] = safetensors_digest(path)  # read back while its pages are still cached
        self.buffered = 0
        self.shard_documents.append(self.documents)


def extract_oracle(
    backbone_dir: str | Path,
    corpus_path: str | Path,
    out_dir: str | Path,
    *,
    exits: dict | None,
    max_length: int,
    store_dtype: str = "float32",
    shard_mb: float = 256,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict:
    """Write the oracle store of one backbone over the corpus, shard by shard.

    exits: the backbone's `exits` entry of the profile (None: the default positions);
    device, dtype: where and in which precision the backbone runs.
    """
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"distill.store_dtype: {store_dtype!r} is not one of {sorted(STORE_DTYPES)}")
    backbone = load_backbone(backbone_dir, device, dtype)
    stack = layer_stack(backbone.model)
    layers = exit_positions({"exits": exits}, backbone.num_layers)
    documents = read_jsonl(corpus_path)
    if not documents:
        raise ValueError(f"{corpus_path}: the corpus is empty; check the corpus section of the config")
    offsets = [0]
    positives = {k: {e: 0 for e in layers} for k in REPORTED_K}
    with atomic_dir(out_dir) as tmp:
        writer = ShardWriter(tmp, layers, int(shard_mb * 2**20))
        for document in tqdm(documents, desc=f"oracle {backbone.meta['name']}", unit="doc"):
            ids = backbone.tokenizer(document["text"], return_tensors="pt").input_ids[:, :max_length]
            if ids.shape[1] == 0:
                raise ValueError(f"{corpus_path}: document {document.get('id')!r} has no tokens; drop it from the corpus")
            hiddens, ranks = document_pass(stack, ids.to(backbone.model.device), layers)
            hiddens = {e: h[0].to(STORE_DTYPES[store_dtype]).cpu() for e, h in hiddens.items()}
            ranks = {e: r.cpu() for e, r in ranks.items()}
            writer.add(hiddens, ranks)
            for k in REPORTED_K:
                for e in layers:
                    positives[k][e] += int((ranks[e] < k).sum())
            offsets.append(offsets[-1] + ids.shape[1])
        writer.flush()
        save_file({"offsets": torch.tensor(offsets, dtype=torch.int64),
                   "shard_documents": torch.tensor(writer.shard_documents, dtype=torch.int64)},
                  str(tmp / INDEX_FILE))
        meta = {
            "digests": {**writer.digests, INDEX_FILE: safetensors_digest(tmp / INDEX_FILE)},
            "environment": environment(),  # the bits of the hidden states depend on the machine's kernels
            "backbone": backbone.meta["name"],
            "backbone_label": backbone.meta["label"],
            "num_layers": backbone.num_layers,
            "hidden_size": backbone.model.config.hidden_size,
            "exit_positions": layers,
            "store_dtype": store_dtype,
            "num_documents": len(documents),
            "num_tokens": offsets[-1],
            "num_shards": len(writer.shard_documents) - 1,
            "max_length": max_length,
            "documents": [{"id": str(d.get("id", i)), "topic": d.get("topic")} for i, d in enumerate(documents)],
            "positive_rate": {f"top{k}": {str(e): n / offsets[-1] for e, n in per_exit.items()}
                              for k, per_exit in positives.items()},
        }
        write_json(tmp / META_FILE, meta)
    log.info("oracle store: %d documents, %d tokens in %d shards, exits %s; top-1 positive rate %s", len(documents),
             offsets[-1], meta["num_shards"], layers, meta["positive_rate"]["top1"])
    return meta


class OracleStore:
    """The extracted store, read lazily: one document's hidden states and ranks at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / INDEX_FILE).exists() or not (self.path / META_FILE).exists():
            raise FileNotFoundError(f"no oracle store in {self.path}; build it with the extract_oracle rule")
        self.meta = read_json(self.path / META_FILE)
        index = load_file(str(self.path / INDEX_FILE))
        self.exits: list[int] = self.meta["exit_positions"]
        self.hidden_size: int = self.meta["hidden_size"]
        self.offsets: list[int] = index["offsets"].tolist()
        self.shard_documents: list[int] = index["shard_documents"].tolist()
        self.shard_of = [s for s in range(len(self.shard_documents) - 1)
                         for _ in range(self.shard_documents[s], self.shard_documents[s + 1])]
        self._shard: tuple[int, Any] | None = None  # the one open shard (its mapped pages count as resident)

    @property
    def digest(self) -> str:
        """The store's content digest, from the file digests written beside it (a store written before
        they were recorded is hashed now)."""
        digests = self.meta.get("digests") or {
            path.name: safetensors_digest(path) for path in sorted(self.path.glob("*.safetensors"))}
        return combined_digest(digests)

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    def length(self, document: int) -> int:
        return self.offsets[document + 1] - self.offsets[document]

    def _slice(self, document: int, name: str) -> Tensor:
        """A copy of one document's rows: only one shard is open at a time, so the pages a reader
        has touched are released shard by shard instead of adding up to the whole store."""
        shard = self.shard_of[document]
        if self._shard is None or self._shard[0] != shard:
            self._shard = None
            self._shard = (shard, safe_open(str(self.path / shard_name(shard)), framework="pt"))
        start = self.offsets[document] - self.offsets[self.shard_documents[shard]]
        return self._shard[1].get_slice(name)[start : start + self.length(document)].clone()

    def hidden(self, exit_layer: int, document: int) -> Tensor:
        """Float32 hidden states (T, d) of one document (stored possibly in a narrower dtype)."""
        return self._slice(document, f"hidden.{exit_layer}").float()

    def ranks(self, exit_layer: int, document: int) -> Tensor:
        """Rank of the exit's greedy token among the full model's logits, (T,) int32."""
        return self._slice(document, f"rank.{exit_layer}")

    def labels(self, exit_layer: int, document: int, top_k: int) -> Tensor:
        """1 where the exit's top-1 token is among the full model's top-k, as int64 (T,)."""
        return (self.ranks(exit_layer, document) < top_k).long()
