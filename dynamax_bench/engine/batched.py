"""Batched early-exit decoding: many prompts, one strategy, every row as its batch-1 run.

`BatchedGenerator.generate(prompts, strategy)` returns one `Generation` per prompt, in input
order, with the tokens and per-token exit trace that `EarlyExitGenerator` (the reference path)
gives that prompt alone, up to the near ties it records (engine/neartie.py; engine/correctness.py
re-decodes and explains them).

- Batches: prompts sorted so that rows sharing a token prefix sit together (or, without prefix
  sharing, by length), cut into batches of `batch_size` (engine/prefix.py); the prompts go
  through `Prefiller` (engine/prefill.py), whose caches are copied into the static decode cache
  (engine/static.py: preallocated K/V with per-row lengths, or Mamba-2 states), so decode steps
  write in place. A row that finishes (EOS, stop string, max new tokens) leaves the batch: every
  cache, mask and rule state keeps the other rows.
- Decode step: every row starts at layer 0. At each exit the rule decides for the rows still
  running; a row that exits keeps its exited hidden state (its token is read from it through the
  final norm and LM head, or from the logits the rule computed there), a stateful rule steps its
  state with that state at the later exits, in one call over every row of the batch.
- Exits skip work: after an exit, the later layers run on the rows still running only (their
  hidden states, positions, mask rows, and their K/V gathered from the static cache); the rows
  that left get their skipped layers' cache entries from the state policy after the step
  (`LayerStack.fill_exited`). A policy that runs the skipped layers anyway (Mamba-2 `partial`
  steps their mixers) runs every row and keeps the exited rows' state. Masking, the earlier way
  (every row runs every layer, an exited row's output discarded), is timed against it in
  benchmarks/batched_throughput.py.
- Decisions stay on the device: exit masks, executed layers, confidences and near-tie flags are
  tensors; the host reads the device once per step (tokens, exit layers, margins and the
  decisions' near ties, in one tensor) plus once per exit point a rule decides at (how many rows
  leave there: the running rows' count sets the next layers' shapes). `host_reads` counts them.
- A sweep in one call (`generate_each`: the thresholds of a generate job): the strategies with the
  same kept layers prefill each batch once, each stateful rule (one per `Strategy.prompt_pass` key)
  building its state from that one pass, and each strategy decodes from it (the static cache and
  rule state are each decode's own copies).
- Repetition penalty: transformers' processor over each row's own tokens (prompt and output);
  the left padding of the token history repeats the row's first prompt token, which is already
  penalised once (a penalty applies once per token id), so padding changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm import tqdm

from dynamax_bench.engine.generator import EngineBase, Generation, Strategy
from dynamax_bench.engine.neartie import Bounds, NearTie
from dynamax_bench.engine.prefill import Prefilled, Prefiller
from dynamax_bench.engine.prefix import plan_batches
from dynamax_bench.engine.rowstate import RowState, clone_rows, select_rows, write_rows
from dynamax_bench.engine.rules import ExitPoint, ExitRule, decide
from dynamax_bench.engine.static import RecurrentStates, StaticKV
from dynamax_bench.engine.stopping import StopStrings


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
    cache: StaticKV | RecurrentStates
    positions: Tensor  # (B,) long: each row's position of its newest token
    history: Tensor  # (B, capacity) long: each row's tokens so far, right-aligned at column `length`
    length: int  # history columns written
    state: RowState  # the rule's per-row state

    def tokens_so_far(self) -> Tensor:
        """(B, H): the columns of the history some row has reached (the repetition penalty's input)."""
        longest = max(len(row.prompt) + len(row.tokens) for row in self.rows)
        return self.history[:, self.length - longest:self.length]

    def append(self, tokens: Tensor) -> None:
        self.history[:, self.length] = tokens
        self.length += 1

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (tensor order)."""
        index = torch.tensor(rows, device=self.positions.device)
        self.rows = [self.rows[r] for r in rows]
        self.cache.keep(rows)
        self.positions, self.history = self.positions[index], self.history[index]
        self.state = select_rows(self.state, index)


@dataclass
class _Step:
    """What a decode step leaves on the device for the read: every row's hidden state to read its
    token from, the layers it executed, logits a rule already computed for it, the decisions' near
    ties, and (oracle) the hidden states at every exit."""

    hidden: Tensor  # (B, 1, d)
    executed: Tensor  # (B,) long
    logits: Tensor | None  # (B, vocab) float32: the head's output for every row, where the rule computed it at
    # each exit a row left at (None: the read runs the head)
    confidence: Tensor | None  # (exits, B) float32: confidence - threshold of each row that decided there
    ties: Tensor | None  # (exits, B) bool: that decision was a near tie
    exit_hiddens: list[Tensor] = field(default_factory=list)


class BatchedGenerator(EngineBase):
    """Greedy early-exit decoding of many prompts at once, exact to the batch-1 reference."""

    def __init__(self, *args, batch_size: int = 16, share_prefixes: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_size = batch_size
        self.share_prefixes = share_prefixes
        self.window = getattr(self.stack.config, "sliding_window", None)
        self.bounds = Bounds.for_dtype(self.model.dtype)
        self.host_reads = 0  # reads of device values by the host, in decode steps (one per `_host` call)
        self.steps = 0  # decode steps run (host_reads / steps: reads per step)

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
        strategies with the same kept layers prefill each batch once, every stateful rule reading that
        pass (engine/prefill.py), and each decodes from it: the tensors each would compute alone, at the
        cost of one prefill.
        A reused pass is not in the first-token time of the strategies after the first.
        `kept`: a dict the caller passes to every call with the same prompts (the repeats of a timing):
        each batch's prompt passes are computed by the first call, kept there, and every call decodes
        from them, so only the first call's first-token time holds the prompt pass."""
        for strategy in strategies:
            self.check(strategy)
        ids = [self.tokenize(p) for p in prompts]
        if self.window is not None and max(map(len, ids)) + self.max_new_tokens >= self.window:
            raise ValueError(f"sequences may reach the sliding window ({self.window}): decode them at batch 1")
        plan = plan_batches(ids, self.batch_size, self.share_prefixes)
        keys = [strategy.prompt_pass() for strategy in strategies]
        # one backbone pass per set of kept layers; each stateful rule builds its state from it (engine/prefill.py)
        groups: dict[int | None, list[Strategy]] = {}
        for strategy in strategies:
            groups.setdefault(strategy.keep_layers, []).append(strategy)
        prefillers = {layers: Prefiller(self.stack, self.points, group) for layers, group in groups.items()}
        out: list[list[Generation | None]] = [[None] * len(ids) for _ in strategies]
        for batch in tqdm(plan.batches, desc=progress, unit="batch", disable=progress is None):
            prompt_ids, prefix_lengths = [ids[i] for i in batch], [plan.prefix_lengths[i] for i in batch]
            passes: dict[tuple[tuple[int, ...], Hashable], Prefilled] = {} if kept is None else kept
            for k, (strategy, key) in enumerate(zip(strategies, keys)):
                started = time.perf_counter()
                slot = (tuple(batch), key)
                if slot not in passes:
                    made = prefillers[strategy.keep_layers].run(prompt_ids, prefix_lengths)
                    passes.update({(tuple(batch), made_key): done for made_key, done in made.items()
                                   if (tuple(batch), made_key) not in passes})
                # decoding reads the pass (its static cache and rule state are copies); the last strategy of a
                # pass lets it go, unless the caller keeps it
                done = passes.pop(slot) if kept is None and key not in keys[k + 1:] else passes[slot]
                rows = [_Row(index=i, prompt=ids[i], stops=self.stop_watch()) for i in batch]
                self._decode(rows, done, strategy, started, on_first_token)
                for row in rows:
                    out[k][row.index] = Generation(
                        prompt_ids=row.prompt, token_ids=row.tokens, text=self.text(row.tokens),
                        exit_layers=row.exits, stop_reason=row.stop_reason,
                        first_token_seconds=row.first_token_seconds, near_ties=row.near_ties,
                    )
        return out

    def _host(self, values: Tensor) -> list:
        """Read device values on the host: the only place a decode step waits for the device."""
        self.host_reads += 1
        return values.tolist()

    def _decode(self, rows: list[_Row], done: Prefilled, strategy: Strategy, started: float,
                on_first_token: Callable[[], None] | None) -> None:
        """Decode a prefilled batch until every row stopped (`started`: the clock of its first-token time)."""
        longest = max(len(row.prompt) for row in rows)
        history = torch.tensor([[row.prompt[0]] * (longest - len(row.prompt)) + row.prompt
                                + [0] * self.max_new_tokens for row in rows], device=self.device)
        layers = strategy.keep_layers or self.stack.num_layers
        cache = self.stack.static_cache(done.cache, layers, done.mask.shape[1] + self.max_new_tokens, done.mask,
                                        done.starts, done.holes)
        batch = _Batch(rows=rows, cache=cache, positions=done.positions, history=history, length=longest,
                       state=clone_rows(done.state))
        step: _Step | None = None
        hidden = done.hidden
        while True:
            tokens = self._read(batch, hidden, step, strategy)
            if step is None:
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
            step = self._step(batch, tokens, strategy)
            hidden = step.hidden

    def _read(self, batch: _Batch, hidden: Tensor, step: _Step | None, strategy: Strategy) -> Tensor:
        """Each row's token from its hidden state (B, 1, d) (step None: the prompt's forward); record
        tokens, exits, near ties and stops from one read of the device. Returns the tokens (B,)."""
        history = batch.tokens_so_far()
        logits = self.stack.head(hidden) if step is None or step.logits is None else step.logits
        scores = self.processors(history, logits)  # (B, vocab)
        tokens = scores.argmax(-1)
        num_layers = strategy.keep_layers or self.stack.num_layers
        size = len(batch.rows)
        executed = torch.full((size,), num_layers, device=tokens.device) if step is None else step.executed
        parts = [tokens, executed, self.bounds.margins(scores)]
        oracle = strategy.oracle and step is not None
        if oracle:
            executed, margins = self._oracle(history, tokens, step.exit_hiddens)
            parts[1] = executed
            parts.append(margins.flatten())
        decided = step is not None and step.confidence is not None
        if decided:
            parts += [step.confidence.flatten(), step.ties.flatten()]
        values = self._host(torch.cat([p.to(torch.float64) for p in parts]))
        token_ids, layers, margins = values[:size], values[size:2 * size], values[2 * size:3 * size]
        rest = values[3 * size:]
        exits = list(self.points.values())
        for r, row in enumerate(batch.rows):
            index = len(row.tokens)
            if oracle:
                for p, point in enumerate(exits):
                    if point.layer > layers[r]:
                        break
                    if rest[p * size + r] < self.bounds.logit_margin:
                        row.near_ties.append(NearTie(token=index, kind="oracle_margin", layer=point.layer,
                                                     value=rest[p * size + r]))
            if decided:
                count = len(exits) * size
                for p, point in enumerate(exits):
                    if rest[count + p * size + r]:
                        row.near_ties.append(NearTie(token=index, kind="confidence", layer=point.layer,
                                                     value=rest[p * size + r]))
            if margins[r] < self.bounds.logit_margin:
                row.near_ties.append(NearTie(token=index, kind="logit_margin", layer=int(layers[r]), value=margins[r]))
            row.tokens.append(int(token_ids[r]))
            row.exits.append(int(layers[r]))
            row.stop_reason = self.stop_reason(int(token_ids[r]), len(row.tokens), row.stops)
        batch.append(tokens)
        return tokens

    def _oracle(self, history: Tensor, tokens: Tensor, exit_hiddens: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Per row, the first exit whose greedy token equals the full model's (L when none does), and every
        exit's relative top-2 gap (exits, B) (the near ties are those up to the chosen exit)."""
        picks, margins = [], []
        for hidden in exit_hiddens:
            scores = self.processors(history, self.stack.head(hidden))
            picks.append(scores.argmax(-1))
            margins.append(self.bounds.margins(scores))
        matches = torch.stack(picks) == tokens  # (exits, B)
        layers = torch.tensor([point.layer for point in self.points.values()], device=tokens.device)
        chosen = torch.where(matches.any(0), layers[matches.int().argmax(0)], self.stack.num_layers)
        return chosen, torch.stack(margins)

    def _step(self, batch: _Batch, tokens: Tensor, strategy: Strategy) -> _Step:
        """One decode position for every row, on the static cache (see the module docstring)."""
        stack, rule, cache = self.stack, strategy.rule, batch.cache
        num_layers = strategy.keep_layers or stack.num_layers
        size = len(batch.rows)
        self.steps += 1
        cache.begin()
        hidden = stack.embed(tokens[:, None])
        inputs = stack.decode_inputs(hidden, cache, batch.positions)
        batch.positions = batch.positions + 1
        device = hidden.device
        skip = rule is not None and stack.skips_work(strategy.policy)
        step = _Step(hidden=hidden, executed=torch.full((size,), num_layers, device=device), logits=None,
                     confidence=None, ties=None)
        if rule is not None:
            step.confidence = torch.zeros(len(self.points), size, device=device)
            step.ties = torch.zeros(len(self.points), size, dtype=torch.bool, device=device)
        everyone = torch.arange(size, device=device)
        # Running rows: `run` their indices (None: every row), `running` their count. Skipping work, `h` holds
        # the running rows' hidden states and `full` every row's, up to date for the rows that left; running
        # every row (no rule, or a policy that runs the skipped layers), `h` holds every row's and the rows in
        # `exited` keep their exit state.
        run: Tensor | None = None
        running, h, full, part = size, hidden, hidden, inputs
        exited: Tensor | None = None
        groups: list[tuple[int, Tensor]] = []  # (layers executed, rows) of the rows that left, for the policy
        reuse: bool | None = None  # whether every row that left has its logits from its exit's head
        for index in range(num_layers):
            if not skip:
                out = stack.run_rows(index, h, cache, inputs, None)
                h = out if exited is None else torch.where(exited[:, None, None], h, out)
            elif running:
                h = stack.run_rows(index, h, cache, part, run)
            point = self.points.get(index + 1)
            if point is None:
                continue
            if strategy.oracle:
                step.exit_hiddens.append(h)
            if rule is None or not (running or rule.stateful):
                continue
            if rule.stateful:  # one call over every row: the rows that left step their state with their exit state
                deciding = full.index_copy(0, run, h) if skip and run is not None else h
                confidence, leave, exact = decide(rule, point, deciding, batch.state)
                if run is not None:
                    confidence, leave = confidence[run], leave[run]
            else:
                deciding = h if skip or run is None else h.index_select(0, run)
                confidence, leave, exact = _decide_rows(rule, point, deciding, batch.state, run, size)
            if not running:
                continue
            rows = everyone if run is None else run
            if not exact:
                step.confidence[point.index].index_copy_(0, rows, confidence - rule.threshold)
                step.ties[point.index].index_copy_(0, rows, self.bounds.confidence_ties(confidence, rule.threshold,
                                                                                        rule.probability))
            leaving = int(self._host(leave.sum()))
            if not leaving:
                point.head.take(deciding)
                continue
            at = leave.nonzero_static(size=leaving).squeeze(1)  # positions among the running rows
            gone = rows.index_select(0, at)
            step.executed.index_fill_(0, gone, point.layer)
            logits = point.head.take(deciding)
            if logits is None or reuse is False:
                reuse = False
            else:
                if step.logits is None:
                    step.logits = logits.new_empty((size, logits.shape[-1]))
                step.logits.index_copy_(0, gone, logits.index_select(0, gone if rule.stateful else at))
                reuse = True
            stay = (~leave).nonzero_static(size=running - leaving).squeeze(1)
            running -= leaving
            if skip:
                full = h if run is None else full.index_copy(0, run, h)
                groups.append((point.layer, gone))
                h = h.index_select(0, stay)
                part = stack.rows_inputs(inputs, rows.index_select(0, stay))
            else:
                exited = torch.zeros(size, dtype=torch.bool, device=device) if exited is None else exited
                exited = exited.index_fill(0, gone, True)
            run = rows.index_select(0, stay)
        if skip:
            if running:
                full = h if run is None else full.index_copy(0, run, h)
            stack.fill_exited(strategy.policy, cache, groups, full, inputs)
        else:
            full = h
        if reuse and running:
            step.logits.index_copy_(0, run, stack.head(h.index_select(0, run) if not skip else h))
        elif not reuse:
            step.logits = None
        cache.end()
        step.hidden = full
        return step


def _decide_rows(rule: ExitRule, point: ExitPoint, hidden: Tensor, state: RowState, rows: Tensor | None,
                 size: int) -> tuple[Tensor, Tensor, bool]:
    """`decide` for some rows (None: every row): hidden (n, 1, d) is theirs; the rule sees a copy of their
    state rows, written back after."""
    if rows is None:
        return decide(rule, point, hidden, state)
    part = select_rows(state, rows)
    result = decide(rule, point, hidden, part)
    write_rows(state, rows, part, size)
    return result
