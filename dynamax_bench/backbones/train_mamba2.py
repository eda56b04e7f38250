"""Train a small Mamba-2 LM by distillation from a Transformer teacher (the `train_backbone` rule).

No pretrained Mamba weights can be downloaded offline, so the default profile trains its own
Mamba-2 stand-in: KL to the teacher's next-token distribution (its top-k logits, renormalised)
plus the next-token loss, on the distillation corpus. Training checkpoints to a folder outside
the rule's output, so an interrupted run resumes where it stopped and reaches the same weights.

Training runs at the profile's fixed thread count (`training.threads`) with torch's deterministic
algorithms, and records the environment it ran in (`provenance.environment`: processor, SIMD
flags, kernel dispatch, BLAS) beside the weights: on one machine it is bit-reproducible, across
processors it is not (their kernels round differently; docs/regression-gate.md measures this), and
the regression gate names the rebuilt backbone instead of failing its cells' tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import AutoModelForCausalLM, Mamba2Config, PreTrainedModel, get_cosine_schedule_with_warmup

from dynamax_bench.backbones.prepare import load_backbone
from dynamax_bench.files import atomic_dir, atomic_path, read_jsonl, write_json
from dynamax_bench.backbones.meta import META_FILE
from dynamax_bench.provenance import environment
from dynamax_bench.runtime import deterministic

log = logging.getLogger(__name__)
TRAINING_FILE = "training.json"
CHECKPOINT_FILE = "checkpoint.pt"
TARGETS_FILE = "teacher_targets.safetensors"


@dataclass(frozen=True)
class TrainingSettings:
    """`source.training` of a distilled backbone; `max_minutes` caps the wall time of the whole run,
    `threads` is the torch thread count training runs at (a reduction's order, so its bits, depend on it)."""

    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    weight_decay: float
    kd_weight: float
    top_k: int
    heldout_fraction: float
    eval_every: int
    checkpoint_every: int
    max_minutes: float
    threads: int

    @classmethod
    def from_spec(cls, spec: dict) -> TrainingSettings:
        return cls(**spec)


@dataclass
class Targets:
    """Token blocks and the teacher's top-k next-token log-probabilities on them."""

    train: torch.Tensor  # [N, T] token ids
    heldout: torch.Tensor  # [M, T]
    topk_logp: torch.Tensor  # [N, T, k] float16, teacher log p over the full vocabulary
    topk_ids: torch.Tensor  # [N, T, k] int32


def token_blocks(texts: list[str], tokenizer: Any, seq_len: int, heldout_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents joined with EOS and cut into [seq_len] blocks; the last documents are held out."""
    n_heldout = max(1, round(len(texts) * heldout_fraction))
    if len(texts) <= n_heldout:
        raise ValueError(f"the corpus has {len(texts)} documents: too few to hold out {n_heldout} and train on the rest")

    def blocks(docs: list[str]) -> torch.Tensor:
        ids: list[int] = []
        for text in docs:
            ids.extend(tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
        count = len(ids) // seq_len
        if count == 0:
            raise ValueError(f"{len(ids)} tokens make no block of seq_len={seq_len}; lower training.seq_len or grow the corpus")
        return torch.tensor(ids[: count * seq_len]).view(count, seq_len)

    return blocks(texts[:-n_heldout]), blocks(texts[-n_heldout:])


@torch.inference_mode()
def teacher_topk(teacher: PreTrainedModel, blocks: torch.Tensor, top_k: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's top-k next-token log-probabilities at every position of every block."""
    values, ids = [], []
    for start in tqdm(range(0, len(blocks), batch_size), desc="train_backbone: teacher targets", unit="batch"):
        logp = torch.log_softmax(teacher(blocks[start:start + batch_size]).logits.float(), dim=-1)
        top = logp.topk(top_k, dim=-1)
        values.append(top.values.half())
        ids.append(top.indices.int())
    return torch.cat(values), torch.cat(ids)


@torch.inference_mode()
def heldout_loss(model: PreTrainedModel, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats per token) over the held-out blocks."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start:start + batch_size]
        logits = model(batch).logits[:, :-1].float()
        total += F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    return total / count


def distillation_loss(
    logits: torch.Tensor, tokens: torch.Tensor, topk_logp: torch.Tensor, topk_ids: torch.Tensor, kd_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """kd_weight * KL(teacher top-k || student) + (1 - kd_weight) * next-token CE; returns (loss, kl, ce).

    logits [B, T, V]; tokens [B, T]; topk_logp / topk_ids [B, T, k]. The teacher's top-k
    probabilities are renormalised to sum to one, and the KL is taken over those k tokens.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    teacher_logp = torch.log_softmax(topk_logp.float(), dim=-1)
    student_logp = logp.gather(-1, topk_ids.long())
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1).mean()
    ce = F.nll_loss(logp[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    return kd_weight * kl + (1 - kd_weight) * ce, kl, ce


def batch_order(num_blocks: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """[steps, batch_size] block indices: seeded reshuffles of all blocks, so step s is the same batch on resume."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / num_blocks) + 1
    order = torch.cat([torch.randperm(num_blocks, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size].view(steps, batch_size)


def student_config(architecture: str, overrides: dict, tokenizer: Any) -> Mamba2Config:
    if architecture != "mamba2":
        raise ValueError(f"distilled backbones are Mamba-2 only (architecture: mamba2), not {architecture!r}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Mamba2Config(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad, **overrides,
    )


def run_key(source: dict, seed: int, corpus: Path, teacher_meta: dict) -> str:
    """What a checkpoint must match to be resumed: the recipe, the seed, the corpus bytes and the teacher."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"source": source, "seed": seed, "teacher": teacher_meta}, sort_keys=True).encode())
    digest.update(corpus.read_bytes())
    return digest.hexdigest()[:16]


def _load_targets(work_dir: Path, key: str) -> Targets | None:
    path = work_dir / TARGETS_FILE
    if not path.exists():
        return None
    tensors = load_file(path)
    if tensors["key"].numpy().tobytes().decode() != key:
        return None
    return Targets(tensors["train"], tensors["heldout"], tensors["topk_logp"], tensors["topk_ids"])


def _save_targets(work_dir: Path, key: str, targets: Targets) -> None:
    tensors = {**asdict(targets), "key": torch.frombuffer(bytearray(key.encode()), dtype=torch.uint8)}
    with atomic_path(work_dir / TARGETS_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)


def _load_checkpoint(work_dir: Path, key: str) -> dict | None:
    path = work_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["key"] != key:
        log.info("checkpoint %s is from another recipe or corpus: starting afresh", path)
        return None
    return state


def train_distilled_backbone(
    name: str,
    spec: dict,
    teacher_dir: str | Path,
    corpus_path: str | Path,
    out_dir: str | Path,
    work_dir: str | Path,
    *,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the student, write it as a backbone folder (with training.json) and return the training record.

    `work_dir` keeps the teacher targets and the latest checkpoint until the folder is written;
    `on_step(step, loss)` is called after every optimiser step.
    """
    source, corpus_path, work_dir = spec["source"], Path(corpus_path), Path(work_dir)
    settings = TrainingSettings.from_spec(source["training"])
    with deterministic(settings.threads):
        teacher = load_backbone(teacher_dir)
        tokenizer = teacher.tokenizer
        key = run_key(source, seed, corpus_path, teacher.meta)
        work_dir.mkdir(parents=True, exist_ok=True)

        targets = _load_targets(work_dir, key)
        if targets is None:
            texts = [record["text"] for record in read_jsonl(corpus_path)]
            train, heldout = token_blocks(texts, tokenizer, settings.seq_len, settings.heldout_fraction)
            targets = Targets(train, heldout, *teacher_topk(teacher.model, train, settings.top_k, settings.batch_size))
            _save_targets(work_dir, key, targets)
        teacher_heldout = heldout_loss(teacher.model, targets.heldout, settings.batch_size)
        del teacher

        torch.manual_seed(source.get("seed", seed))
        config = student_config(source["architecture"], source["config"], tokenizer)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)
        scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
        order = batch_order(len(targets.train), settings.batch_size, settings.steps, seed)

        state = _load_checkpoint(work_dir, key)
        if state is None:
            random_heldout = heldout_loss(model, targets.heldout, settings.batch_size)
            step, elapsed, curve = 0, 0.0, [{"step": 0, "heldout_loss": random_heldout}]
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, elapsed, curve, random_heldout = state["step"], state["elapsed"], state["curve"], state["random_heldout"]
            log.info("resuming %s from step %d of %d (%s)", name, step, settings.steps, work_dir / CHECKPOINT_FILE)

        def checkpoint() -> None:
            payload = {
                "key": key, "step": step, "elapsed": elapsed, "curve": curve, "random_heldout": random_heldout,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            }
            with atomic_path(work_dir / CHECKPOINT_FILE) as tmp:
                torch.save(payload, tmp)

        stopped_by = "steps"
        progress = tqdm(total=settings.steps, initial=step, desc=f"train_backbone {name}", unit="step")
        while step < settings.steps:
            if elapsed > settings.max_minutes * 60:
                stopped_by = "time budget"
                log.warning("%s: time budget of %.1f min spent at step %d of %d; the weights now depend on the "
                            "machine's speed (raise training.max_minutes or lower training.steps)",
                            name, settings.max_minutes, step, settings.steps)
                break
            started = time.perf_counter()
            model.train()
            index = order[step]
            tokens = targets.train[index]
            loss, kl, ce = distillation_loss(
                model(tokens).logits, tokens, targets.topk_logp[index], targets.topk_ids[index], settings.kd_weight
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed += time.perf_counter() - started
            entry: dict[str, Any] = {"step": step, "loss": loss.item(), "kl": kl.item(), "ce": ce.item()}
            if step % settings.eval_every == 0 or step == settings.steps:
                entry["heldout_loss"] = heldout_loss(model, targets.heldout, settings.batch_size)
            curve.append(entry)
            progress.update(1)
            progress.set_postfix(loss=f"{entry['loss']:.3f}")
            if step % settings.checkpoint_every == 0:
                checkpoint()
            if on_step is not None:
                on_step(step, entry["loss"])
        progress.close()

        final_heldout = heldout_loss(model, targets.heldout, settings.batch_size)
        record = {
            "backbone": name,
            "teacher": str(teacher_dir),
            "settings": asdict(settings),
            "steps_done": step,
            "stopped_by": stopped_by,
            "train_seconds": elapsed,
            "environment": environment(),  # threads included
            "train_tokens": targets.train.numel(),
            "heldout_tokens": targets.heldout.numel(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "heldout": {
                "student_loss": final_heldout,
                "student_perplexity": math.exp(final_heldout),
                "teacher_loss": teacher_heldout,
                "teacher_perplexity": math.exp(teacher_heldout),
                "random_init_loss": random_heldout,
                "random_init_perplexity": math.exp(random_heldout),
            },
            "curve": curve,
        }
        _write_backbone(name, spec, model, tokenizer, record, Path(out_dir))
        for stale in (CHECKPOINT_FILE, TARGETS_FILE):
            (work_dir / stale).unlink(missing_ok=True)
        log.info("%s: held-out perplexity %.1f (teacher %.1f, random init %.0f) after %d steps in %.0f s",
                 name, math.exp(final_heldout), math.exp(teacher_heldout), math.exp(random_heldout), step, elapsed)
    return record


def _write_backbone(name: str, spec: dict, model: PreTrainedModel, tokenizer: Any, record: dict, out_dir: Path) -> None:
    summary = {k: v for k, v in record.items() if k != "curve"}
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / TRAINING_FILE, record)
        write_json(tmp / META_FILE, {
            "name": name,
            "family": spec["family"],
            "label": spec["label"],
            "stands_in_for": spec.get("stands_in_for"),
            "source": spec["source"],
            "architecture": "Mamba2ForCausalLM",
            "num_layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size,
            "parameters": record["parameters"],
            "training": summary,
        })
