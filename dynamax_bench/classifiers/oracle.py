"""The `extract_oracle` rule: one backbone pass over the corpus, shared by every classifier kind.

For every corpus token t and exit position e it stores the hidden state the exit classifier
reads (the residual stream after e layers, exactly what the engine hands the classifier) and
the rank of the exit's greedy token among the full model's logits at t. A label for any top-k
relaxation is then `rank < k` (k=1: strict agreement), so changing k needs no new pass.

Store layout (a folder):
  exits.safetensors  hidden.<layer> (N, d) in distill.store_dtype, rank.<layer> (N,) int32 per exit,
                     offsets (D+1,) int64: tokens of document i are offsets[i]:offsets[i+1]
  oracle.json        exit layers, documents per split, label rates for several k
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.config import exit_positions
from dynamax_bench.engine.stacks import LayerStack, layer_stack
from dynamax_bench.files import atomic_dir, read_json, read_jsonl, write_json

log = logging.getLogger(__name__)

REPORTED_K = (1, 2, 5, 10)
# Hidden states dominate the store: tokens x exits x width. bfloat16 halves it at 7B widths.
STORE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
STORE_FILE = "exits.safetensors"
META_FILE = "oracle.json"


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


def split_documents(num_documents: int, heldout_fraction: float) -> dict[str, list[int]]:
    """The last documents are held out (the corpus order is already seeded and fixed)."""
    heldout = max(1, round(num_documents * heldout_fraction)) if num_documents > 1 else 0
    return {"train": list(range(num_documents - heldout)), "heldout": list(range(num_documents - heldout, num_documents))}


def extract_oracle(config: dict, backbone_dir: str | Path, corpus_path: str | Path, out_dir: str | Path) -> dict:
    """Write the oracle store of one backbone over the corpus."""
    settings = config["distill"]
    runtime = config["runtime"]
    backbone = load_backbone(backbone_dir, runtime["device"], runtime["dtype"])
    stack = layer_stack(backbone.model)
    exits = exit_positions(config["backbones"][backbone.meta["name"]], backbone.num_layers)
    documents = read_jsonl(corpus_path)
    if not documents:
        raise ValueError(f"{corpus_path}: the corpus is empty; check the corpus section of the config")
    hidden_parts: dict[int, list[Tensor]] = {e: [] for e in exits}
    rank_parts: dict[int, list[Tensor]] = {e: [] for e in exits}
    offsets = [0]
    for document in tqdm(documents, desc=f"oracle {backbone.meta['name']}", unit="doc"):
        ids = backbone.tokenizer(document["text"], return_tensors="pt").input_ids[:, : settings["max_length"]]
        hiddens, ranks = document_pass(stack, ids.to(backbone.model.device), exits)
        for e in exits:
            hidden_parts[e].append(hiddens[e][0].to(STORE_DTYPES[settings["store_dtype"]]).cpu())
            rank_parts[e].append(ranks[e].cpu())
        offsets.append(offsets[-1] + ids.shape[1])
    tensors = {f"hidden.{e}": torch.cat(hidden_parts[e]) for e in exits}
    tensors |= {f"rank.{e}": torch.cat(rank_parts[e]) for e in exits}
    tensors["offsets"] = torch.tensor(offsets, dtype=torch.int64)
    splits = split_documents(len(documents), settings["heldout_fraction"])
    meta = {
        "backbone": backbone.meta["name"],
        "backbone_label": backbone.meta["label"],
        "num_layers": backbone.num_layers,
        "exit_layers": exits,
        "num_documents": len(documents),
        "num_tokens": offsets[-1],
        "max_length": settings["max_length"],
        "splits": splits,
        "positive_rate": {
            f"top{k}": {str(e): float((tensors[f"rank.{e}"] < k).float().mean()) for e in exits} for k in REPORTED_K
        },
    }
    with atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / STORE_FILE))
        write_json(tmp / META_FILE, meta)
    log.info("oracle store: %d documents, %d tokens, exits %s; top-1 positive rate %s", len(documents),
             offsets[-1], exits, meta["positive_rate"]["top1"])
    return meta


class OracleStore:
    """The extracted store, read back for training: per-document hidden states and labels."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not (path / STORE_FILE).exists():
            raise FileNotFoundError(f"no oracle store in {path}; build it with the extract_oracle rule")
        self.meta = read_json(path / META_FILE)
        self.tensors = load_file(str(path / STORE_FILE))
        self.exits: list[int] = self.meta["exit_layers"]
        self.offsets: list[int] = self.tensors["offsets"].tolist()

    def documents(self, split: str) -> list[int]:
        return self.meta["splits"][split]

    def hidden(self, exit_layer: int, document: int) -> Tensor:
        """Float32 hidden states (T, d) of one document (stored possibly in a narrower dtype)."""
        return self.tensors[f"hidden.{exit_layer}"][self.offsets[document] : self.offsets[document + 1]].float()

    def labels(self, exit_layer: int, document: int, top_k: int) -> Tensor:
        """1 where the exit's top-1 token is among the full model's top-k, as int64 (T,)."""
        ranks = self.tensors[f"rank.{exit_layer}"][self.offsets[document] : self.offsets[document + 1]]
        return (ranks < top_k).long()

    def split_hidden(self, exit_layer: int, split: str) -> Tensor:
        return torch.cat([self.hidden(exit_layer, d) for d in self.documents(split)])
