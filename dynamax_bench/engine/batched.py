"""Batched early-exit decoding: many prompts, one strategy, every row as its batch-1 run.

`BatchedGenerator.generate(prompts, strategy)` returns one `Generation` per prompt, in input
order, with the tokens and per-token exit trace that `EarlyExitGenerator` (the reference path)
gives that prompt alone, up to the near ties it records (engine/neartie.py; engine/correctness.py
re-decodes and explains them).

- Batches: prompts sorted so that rows sharing a token prefix sit together (or, without prefix
  sharing, by length), cut into batches of `batch_size` (engine/prefix.py); the prompts go
  through `Prefiller` (engine/prefill.py). A row that finishes (EOS, stop string, max new
  tokens) leaves the batch: every cache, mask and rule state keeps the other rows, and cache
  columns that are padding in every remaining row are dropped.
- Decode step: every row starts at layer 0. At each exit the rule decides per row; a row that
  exits keeps its exited hidden state (its token is read from it through the final norm and LM
  head), a stateful rule steps its state with that state at the later exits, and its skipped
  layers' caches get their entries from the state policy while the other rows go on.
- Rows that exited: every row runs every layer of the step and an exited row's layer output is
  discarded (`LayerStack.run_masked`; its cache entries follow the state policy), so the batch's
  tensors keep their shape. Compacting the running rows instead (only they run a layer, through
  a gathered cache) is the alternative benchmarks/batched_throughput.py times against masking.
- A sweep in one call (`generate_each`: the thresholds of a generate job): the strategies whose
  prompt pass is the same (`Strategy.prompt_pass`) prefill each batch once, and each decodes from
  its own copy of that pass.
- Repetition penalty: transformers' processor over each row's own tokens (prompt and output);
  the left padding of the token history repeats the row's first prompt token, which is already
  penalised once (a penalty applies once per token id), so padding changes nothing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.engine.caches import drop_leading, keep_rows
from dynamax_bench.engine.generator import EngineBase, Generation, Strategy
from dynamax_bench.engine.neartie import Bounds, NearTie
from dynamax_bench.engine.prefill import Prefilled, Prefiller
from dynamax_bench.engine.prefix import plan_batches
from dynamax_bench.engine.rowstate import RowState, select_rows, write_rows
from dynamax_bench.engine.rules import ExitPoint, decide
from dynamax_bench.engine.stopping import StopStrings

T = TypeVar("T")


@dataclass
class _Row:
    """One prompt's progress."""

    index: int  # position in the caller's list
    prompt: list[int]
    stops: StopStrings
    tokens: list[int] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    near_ties: list[NearTie] = field(default_factory=list)
    stop_reason: str | None = None
    first_token_seconds: float = 0.0


@dataclass
class _Batch:
    """The rows decoding together, in tensor order, and their tensors (row r of each)."""

    rows: list[_Row]
    cache: object
    mask: Tensor  # (B, T) long: attention mask of the cache's columns (+ the current token)
    positions: Tensor  # (B,) long: each row's position of its newest token
    history: Tensor  # (B, H) long: each row's tokens so far, left-padded (repetition penalty)
    state: RowState  # the rule's per-row state

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (tensor order), then drop the columns that are padding in all of them."""
        index = torch.tensor(rows, device=self.mask.device)
        self.rows = [self.rows[r] for r in rows]
        keep_rows(self.cache, index)
        self.mask, self.positions, self.history = self.mask[index], self.positions[index], self.history[index]
        self.state = select_rows(self.state, index)
        leading = int(self.mask.any(0).int().argmax())
        if leading:
            drop_leading(self.cache, leading)
            self.mask = self.mask[:, leading:]
        longest = max(len(row.prompt) + len(row.tokens) for row in self.rows)
        self.history = self.history[:, self.history.shape[1] - longest:]


class BatchedGenerator(EngineBase):
    """Greedy early-exit decoding of many prompts at once, exact to the batch-1 reference."""

    def __init__(self, *args, batch_size: int = 16, share_prefixes: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_size = batch_size
        self.share_prefixes = share_prefixes
        self.window = getattr(self.stack.config, "sliding_window", None)
        self.bounds = Bounds.for_dtype(self.model.dtype)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str | Sequence[int]], strategy: Strategy,
                 progress: str | None = None, on_first_token: Callable[[], None] | None = None,
                 kept: dict | None = None) -> list[Generation]:
        """Every prompt's generation, in input order (`progress`: a tqdm bar over batches with this label;
        `on_first_token`: called when a batch's first tokens are read, where the latency rule marks its clock;
        `kept`: see `generate_each`)."""
        return self.generate_each(prompts, [strategy], progress, on_first_token, kept)[0]

    @torch.inference_mode()
    def generate_each(self, prompts: Sequence[str | Sequence[int]], strategies: Sequence[Strategy],
                      progress: str | None = None, on_first_token: Callable[[], None] | None = None,
                      kept: dict | None = None) -> list[list[Generation]]:
        """Each strategy's generations of the same prompts (a threshold sweep in one call). The
        strategies whose prompt pass is the same (`Strategy.prompt_pass`) prefill each batch once and
        decode from copies of it: the tensors each would compute alone, at the cost of one prefill.
        A reused pass is not in the first-token time of the strategies after the first.
        `kept`: a dict the caller passes to every call with the same prompts (the repeats of a timing):
        each batch's prompt passes are computed by the first call, kept there, and every call decodes
        from a copy, so only the first call's first-token time holds the prompt pass."""
        for strategy in strategies:
            self.check(strategy)
        ids = [self.tokenize(p) for p in prompts]
        if self.window is not None and max(map(len, ids)) + self.max_new_tokens >= self.window:
            raise ValueError(f"sequences may reach the sliding window ({self.window}): decode them at batch 1")
        plan = plan_batches(ids, self.batch_size, self.share_prefixes)
        keys = [strategy.prompt_pass() for strategy in strategies]
        prefillers = {key: Prefiller(self.stack, self.points, strategy) for key, strategy in zip(keys, strategies)}
        out: list[list[Generation | None]] = [[None] * len(ids) for _ in strategies]
        for batch in tqdm(plan.batches, desc=progress, unit="batch", disable=progress is None):
            prompt_ids, prefix_lengths = [ids[i] for i in batch], [plan.prefix_lengths[i] for i in batch]
            passes: dict[tuple[tuple[int, ...], Hashable], Prefilled] = {} if kept is None else kept
            for k, (strategy, key) in enumerate(zip(strategies, keys)):
                started = time.perf_counter()
                slot = (tuple(batch), key)
                if slot not in passes:
                    passes[slot] = prefillers[key].run(prompt_ids, prefix_lengths)
                # the last strategy of a pass decodes from it, unless the caller keeps it; the others from a copy
                # (decoding writes the caches)
                last = kept is None and key not in keys[k + 1:]
                done = passes.pop(slot) if last else copy.deepcopy(passes[slot])
                rows = [_Row(index=i, prompt=ids[i], stops=self.stop_watch()) for i in batch]
                self._decode(rows, done, strategy, started, on_first_token)
                for row in rows:
                    out[k][row.index] = Generation(
                        prompt_ids=row.prompt, token_ids=row.tokens, text=self.text(row.tokens),
                        exit_layers=row.exits, stop_reason=row.stop_reason,
                        first_token_seconds=row.first_token_seconds, near_ties=row.near_ties,
                    )
        return out

    def _decode(self, rows: list[_Row], done: Prefilled, strategy: Strategy, started: float,
                on_first_token: Callable[[], None] | None) -> None:
        """Decode a prefilled batch until every row stopped (`started`: the clock of its first-token time)."""
        longest = max(len(row.prompt) for row in rows)
        history = torch.tensor([[row.prompt[0]] * (longest - len(row.prompt)) + row.prompt for row in rows],
                               device=self.device)
        batch = _Batch(rows=rows, cache=done.cache, mask=done.mask, positions=done.positions, history=history,
                       state=done.state)
        hidden, exits, exit_hiddens = done.hidden, None, []
        while True:
            tokens = self._read(batch, hidden, exits, exit_hiddens, strategy)
            if exits is None:
                seconds = time.perf_counter() - started
                for row in batch.rows:
                    row.first_token_seconds = seconds
                if on_first_token is not None:
                    on_first_token()
            keep = [r for r, row in enumerate(batch.rows) if row.stop_reason is None]
            if not keep:
                return
            if len(keep) < len(batch.rows):
                batch.keep(keep)
                tokens = tokens[torch.tensor(keep, device=tokens.device)]
            hidden, exits, exit_hiddens = self._step(batch, tokens, strategy)

    def _read(self, batch: _Batch, hidden: Tensor, exits: Tensor | None, exit_hiddens: list[Tensor],
              strategy: Strategy) -> Tensor:
        """Each row's token from its hidden state (B, 1, d); record tokens, exits, near ties, stops.
        exits (B,): layers executed (None: the prompt's forward). Returns the tokens (B,)."""
        scores = self.processors(batch.history, self.stack.head(hidden))  # (B, vocab)
        tokens = scores.argmax(-1)
        margins = self.bounds.margins(scores).tolist()
        num_layers = strategy.keep_layers or self.stack.num_layers
        executed = [num_layers] * len(batch.rows) if exits is None else exits.tolist()
        if strategy.oracle and exits is not None:
            executed = self._oracle(batch, tokens, exit_hiddens)
        for row, token, layer, margin in zip(batch.rows, tokens.tolist(), executed, margins):
            if margin < self.bounds.logit_margin:
                row.near_ties.append(NearTie(token=len(row.tokens), kind="logit_margin", layer=layer, value=margin))
            row.tokens.append(token)
            row.exits.append(layer)
            row.stop_reason = self.stop_reason(token, len(row.tokens), row.stops)
        batch.history = torch.cat([batch.history, tokens[:, None]], dim=1)
        return tokens

    def _oracle(self, batch: _Batch, tokens: Tensor, exit_hiddens: list[Tensor]) -> list[int]:
        """Per row, the first exit whose greedy token equals the full model's (L when none does);
        near ties are the top-2 gaps of the exits' scores up to that one."""
        history = batch.history
        picks, margins = [], []
        for hidden in exit_hiddens:
            scores = self.processors(history, self.stack.head(hidden))
            picks.append(scores.argmax(-1).tolist())
            margins.append(self.bounds.margins(scores).tolist())
        layers = []
        for r, (row, token) in enumerate(zip(batch.rows, tokens.tolist())):
            chosen = self.stack.num_layers
            for point, pick, margin in zip(self.points.values(), picks, margins):
                if margin[r] < self.bounds.logit_margin:
                    row.near_ties.append(NearTie(token=len(row.tokens), kind="oracle_margin", layer=point.layer,
                                                 value=margin[r]))
                if pick[r] == token:
                    chosen = point.layer
                    break
            layers.append(chosen)
        return layers

    def _step(self, batch: _Batch, tokens: Tensor, strategy: Strategy) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One decode position for every row: the hidden state each row's token is read from
        (B, 1, d), the layers each row executed (B,), and (oracle) the hidden states at every exit."""
        stack, rule, policy = self.stack, strategy.rule, strategy.policy
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=1)
        hidden = stack.embed(tokens[:, None])
        inputs = stack.step_inputs(hidden, batch.cache, batch.mask, batch.positions[:, None])
        batch.positions = batch.positions + 1
        num_layers = strategy.keep_layers or stack.num_layers
        size = hidden.shape[0]
        exited = torch.zeros(size, dtype=torch.bool, device=hidden.device)
        executed = torch.full((size,), num_layers, dtype=torch.long, device=hidden.device)
        left = 0  # rows that exited so far
        exit_hiddens: list[Tensor] = []
        for index in range(num_layers):
            if left == 0:
                hidden = stack.layer(index, hidden, batch.cache, inputs)
            elif left == size:
                stack.fill_layer(policy, index, hidden, batch.cache, inputs)
            else:
                out = stack.run_masked(policy, index, hidden, exited, batch.cache, inputs)
                hidden = torch.where(exited[:, None, None], hidden, out)
            point = self.points.get(index + 1)
            if point is None:
                continue
            if strategy.oracle:
                exit_hiddens.append(hidden)
            if rule is None:
                continue
            if rule.stateful and left:
                gone = exited.nonzero().squeeze(1)
                on_rows(gone, hidden, batch.state, lambda h, s, p=point: rule.advance(p, h, s))
            if left < size:
                running = (~exited).nonzero().squeeze(1)
                confidence, leave, exact = on_rows(running, hidden, batch.state,
                                                   lambda h, s, p=point: decide(rule, p, h, s))
                if not exact:
                    self._note_confidences(batch, running, confidence, point, rule.threshold)
                leaving = running[leave]
                exited[leaving] = True
                executed[leaving] = point.layer
                left += int(leaving.numel())
        return hidden, executed, exit_hiddens

    def _note_confidences(self, batch: _Batch, running: Tensor, confidence: Tensor, point: ExitPoint,
                          threshold: float) -> None:
        for r in self.bounds.confidence_ties(confidence, threshold).nonzero().squeeze(1).tolist():
            row = batch.rows[int(running[r])]
            row.near_ties.append(NearTie(token=len(row.tokens), kind="confidence", layer=point.layer,
                                         value=float(confidence[r] - threshold)))

def on_rows(rows: Tensor, hidden: Tensor, state: RowState, call: Callable[[Tensor, RowState], T]) -> T:
    """Call a rule hook on some rows of the batch: their hidden states (n, 1, d) and a copy of their
    state rows, written back after. All rows: the batch's own tensors, no copy."""
    size = hidden.shape[0]
    if rows.numel() == size:
        return call(hidden, state)
    part = select_rows(state, rows)
    result = call(hidden[rows], part)
    write_rows(state, rows, part, size)
    return result
