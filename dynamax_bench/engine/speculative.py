"""Self-speculative decoding (`spec-e<E>-k<K>`): the first E layers draft, the layers above verify.

A round starts from the last token x, which no layer has read yet, with every layer's cache at the
same P positions. The draft runs x through layers 1..E as a plain decode step and reads its token d1
from the layer-E hidden state through the backbone's own final norm and LM head (an early exit at
E); then d1 through layers 1..E, and so on, K drafts in all (fewer where `max_new_tokens` is near,
or up to a drafted end-of-sequence token); the last draft also gets its own lower step. The upper
layers E+1..L then run once over the m <= K+1 positions of the round (x, d1, ..., dK), starting from
the layer-E hidden states the draft left, and the head reads every position: position j gives the
full model's token after x, d1..dj. The round keeps the drafts up to the first one that differs
from the full model's token, plus the full model's token at that place (or after the last draft):
at least one token per round, every one the full model's greedy token (with the repetition penalty,
applied per position to the sequence up to it). The positions after the last kept draft are rolled
back:

- Transformer: the lower layers wrote each position's K/V in a decode step, exactly as plain decoding
  does; the verification pass wrote the upper layers' K/V of all m positions; `DynamicCache.crop`
  removes the rejected positions from every layer.
- Mamba-2: the upper layers run the m positions as m recurrent steps each (the mixer's own decode
  step), not the chunked scan, so every conv and SSM state is the one a plain decode computes, bit
  for bit; the state after each step of the round is kept (a clone of the conv and SSM state of
  each layer), and a rejection copies back the state after the last kept position. The alternative,
  one snapshot before the round and a recompute of the kept positions, runs every layer again over
  up to K positions, re-reading its weights, where a snapshot copies one state (a state is about 7% of
  a layer's weights on the default profile's Mamba-2, 2% on Mamba-Codestral-7B); and the chunked scan
  would leave states that differ from a plain decode's in the last bits. The recurrent verification
  buys nothing over plain decoding but the head's pass over m positions at once: this is the honest
  cost of a recurrent backbone, which `costs/speculation.py` predicts.

Exactness. The drafts and the Mamba-2 states are plain decoding's computations. What can differ in the
last bits from the full model's plain decode are the verification's logits: the head reads m
positions in one matrix product, and on a Transformer the upper layers run m positions at once and
their cached K/V come from that pass. Each decision the round takes from a verification logit whose
top-2 margin lies within the near-tie bound (engine/neartie.py) is recorded as a near tie, and the
decoder (generation/decoder.py) re-decodes such rows with the full model at batch 1 and keeps that
output where it differs (counted in the cell's agreement record), as for the batched engine.

Batch 1 only: the rows of a batch would accept different numbers of drafts, so their caches would
need per-row lengths; the decoder runs `spec-*` methods at batch 1 whatever the profile batches.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

from dynamax_bench.engine.generator import EarlyExitGenerator, Generation, PromptPass, Strategy
from dynamax_bench.engine.neartie import Bounds, NearTie
from dynamax_bench.engine.stacks import LayerStack, Mamba2Stack, TransformerStack


@dataclass(frozen=True)
class Speculation:
    """Draft `draft_tokens` (K) tokens per round from the hidden state after `draft_layer` (E) layers."""

    draft_layer: int
    draft_tokens: int


@dataclass
class SpeculativeGeneration(Generation):
    """A generation with its rounds: per verification pass, the tokens drafted and how many of them the
    full model accepted (a pass keeps accepted + 1 tokens, fewer where the sequence stopped inside it)."""

    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)


def full_decode_rounds(generation: Generation) -> SpeculativeGeneration:
    """A generation of the full model's plain decode seen as rounds that draft nothing (one verification
    pass per decode token): the trace of a row whose output was taken from the full model at batch 1."""
    steps = max(0, len(generation.token_ids) - 1)
    return SpeculativeGeneration(**{f.name: getattr(generation, f.name) for f in fields(Generation)},
                                 drafted=[0] * steps, accepted=[0] * steps)


class _Rounds(ABC):
    """What a backbone family does with its caches in a round: the upper layers' verification pass over
    the round's positions, and the rollback of rejected positions."""

    def __init__(self, stack: LayerStack, draft_layer: int) -> None:
        self.stack = stack
        self.draft_layer = draft_layer

    def begin(self) -> None:
        """A round starts (every layer's cache holds the same positions)."""

    def lower_step_done(self, cache: Cache) -> None:
        """The lower layers have run one more position of the round."""

    @abstractmethod
    def verify(self, hidden: Tensor, cache: Cache, past: int) -> Tensor:
        """Layers E+1..L over the round's positions (hidden (1, m, d): their layer-E states), `past`
        positions cached before the round; returns the last layer's output (1, m, d)."""

    @abstractmethod
    def rollback(self, cache: Cache, keep: int, ran: int) -> None:
        """Keep the first `keep` of the `ran` positions the round added to every layer."""


class _KeyValueRounds(_Rounds):
    """Transformer: one pass of the upper layers over the m positions; `crop` drops rejected K/V."""

    def verify(self, hidden: Tensor, cache: Cache, past: int) -> Tensor:
        m = hidden.shape[1]
        positions = torch.arange(past, past + m, device=hidden.device).unsqueeze(0)
        mask = torch.ones(1, past + m, dtype=torch.long, device=hidden.device)
        inputs = self.stack.step_inputs(hidden, cache, mask, position_ids=positions, layer_idx=self.draft_layer)
        for index in range(self.draft_layer, self.stack.num_layers):
            hidden = self.stack.layer(index, hidden, cache, inputs)
        return hidden

    def rollback(self, cache: Cache, keep: int, ran: int) -> None:
        if ran > keep:
            cache.crop(keep - ran)


class _StateRounds(_Rounds):
    """Mamba-2: the upper layers step through the m positions one at a time; the conv and SSM state of
    every layer after every step of the round is kept, and a rejection copies back the kept one."""

    def begin(self) -> None:
        self.states: dict[int, list[tuple[Tensor, Tensor]]] = {}

    def _keep(self, cache: Cache, index: int) -> None:
        layer = cache.layers[index]
        self.states.setdefault(index, []).append((layer.conv_states[0].clone(), layer.recurrent_states[0].clone()))

    def lower_step_done(self, cache: Cache) -> None:
        for index in range(self.draft_layer):
            self._keep(cache, index)

    def verify(self, hidden: Tensor, cache: Cache, past: int) -> Tensor:
        step = hidden[:, :1]
        inputs = self.stack.step_inputs(step, cache, torch.ones(1, past + 1, dtype=torch.long, device=hidden.device))
        for index in range(self.draft_layer, self.stack.num_layers):
            outputs = []
            for position in range(hidden.shape[1]):
                outputs.append(self.stack.layer(index, hidden[:, position:position + 1], cache, inputs))
                self._keep(cache, index)
            hidden = torch.cat(outputs, dim=1)
        return hidden

    def rollback(self, cache: Cache, keep: int, ran: int) -> None:
        if ran == keep:
            return
        for index, kept in self.states.items():
            conv, ssm = kept[keep - 1]
            layer = cache.layers[index]
            layer.conv_states[0].copy_(conv)
            layer.recurrent_states[0].copy_(ssm)


def rounds_for(stack: LayerStack, draft_layer: int) -> _Rounds:
    if isinstance(stack, TransformerStack):
        return _KeyValueRounds(stack, draft_layer)
    if isinstance(stack, Mamba2Stack):
        return _StateRounds(stack, draft_layer)
    raise ValueError(f"self-speculative decoding has no cache rollback for a {stack.family} backbone")


class SpeculativeGenerator(EarlyExitGenerator):
    """`speculate` decodes one prompt self-speculatively; the inherited `generate` is the reference path
    (with `Strategy.full()`, the full model's plain decode the speculation must reproduce)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        speculation: Speculation,
        max_new_tokens: int,
        repetition_penalty: float = 1.0,
        stop_strings: Sequence[str] = (),
        eos_token_ids: Sequence[int] | None = None,
    ) -> None:
        # the draft layer is the one exit point (its range checked as an exit's: 1 <= E < L)
        super().__init__(model, tokenizer, exit_layers=[speculation.draft_layer], max_new_tokens=max_new_tokens,
                         repetition_penalty=repetition_penalty, stop_strings=stop_strings, eos_token_ids=eos_token_ids)
        if speculation.draft_tokens < 1:
            raise ValueError(f"self-speculative decoding drafts at least one token per round, got {speculation.draft_tokens}")
        self.speculation = speculation
        self.rounds = rounds_for(self.stack, speculation.draft_layer)
        self.bounds = Bounds.for_dtype(model.dtype)

    def _scores_of(self, logits: Tensor, sequence: list[int]) -> Tensor:
        """Scores of one position (logits (1, vocab)) after the logits processors, given the tokens so far."""
        if not self.processors:
            return logits
        return self.processors(torch.tensor([sequence], dtype=torch.long, device=self.device), logits)

    def _draft(self, hidden: Tensor, sequence: list[int]) -> int:
        """The draft token: the greedy token of the layer-E state (1, 1, d) through the final norm and head."""
        return int(self._scores_of(self.stack.head(hidden), sequence).argmax(-1).item())

    def _lower_step(self, token: int, cache: Cache, length: int) -> Tensor:
        """`token` at position `length - 1` through layers 1..E, as a plain decode step runs them."""
        hidden = self.stack.embed(torch.tensor([[token]], dtype=torch.long, device=self.device))
        inputs = self.stack.step_inputs(hidden, cache, torch.ones(1, length, dtype=torch.long, device=self.device))
        for index in range(self.speculation.draft_layer):
            hidden = self.stack.layer(index, hidden, cache, inputs)
        self.rounds.lower_step_done(cache)
        return hidden

    @torch.inference_mode()
    def speculate(self, prompt: str | Sequence[int], on_first_token: Callable[[], None] | None = None,
                  start: PromptPass | None = None) -> SpeculativeGeneration:
        """Greedy decoding of the full model, drafted by layers 1..E and verified by the layers above.
        `on_first_token` and `start` (the full model's prompt pass) as for `EarlyExitGenerator.generate`."""
        started = time.perf_counter()
        full = Strategy.full()
        if start is None:
            start = self.prompt_pass(prompt, full)
        elif start.key != full.prompt_pass() or start.prompt_ids != self.tokenize(prompt):
            raise ValueError("a prompt pass speculates only from its own prompt under the full model's prompt_pass key")
        cache, num_layers = start.cache, self.stack.num_layers
        sequence = list(start.prompt_ids)
        token = int(self._scores_of(self.stack.head(start.hidden[:, -1:, :]), sequence).argmax(-1).item())
        first_token_seconds = time.perf_counter() - started
        if on_first_token is not None:
            on_first_token()
        stops = self.stop_watch()
        tokens, near_ties, drafted, accepted = [token], [], [], []
        sequence.append(token)
        stop_reason = self.stop_reason(token, 1, stops)
        while stop_reason is None:
            past = len(sequence) - 1  # positions every layer holds; `token` is the next input
            budget = min(self.speculation.draft_tokens, self.max_new_tokens - len(tokens) - 1)
            self.rounds.begin()
            drafts: list[int] = []
            states = [self._lower_step(token, cache, past + 1)]
            while len(drafts) < budget:
                draft = self._draft(states[-1], sequence + drafts)
                drafts.append(draft)
                states.append(self._lower_step(draft, cache, past + 1 + len(drafts)))
                if draft in self.eos_token_ids:  # the full model stops there if it agrees: draft no further
                    break
            ran = len(states)  # every round verifies its drafts + 1 positions (the ledger counts them so)
            logits = self.stack.head_all(self.rounds.verify(torch.cat(states, dim=1), cache, past))
            kept = agreed = 0  # positions whose token the round keeps; drafts the full model confirmed
            for j in range(ran):
                scores = self._scores_of(logits[:, j], sequence)
                choice = int(scores.argmax(-1).item())
                margin = float(self.bounds.margins(scores)[0])
                if margin < self.bounds.logit_margin:
                    near_ties.append(NearTie(token=len(tokens), kind="logit_margin", layer=num_layers, value=margin))
                tokens.append(choice)
                sequence.append(choice)
                kept += 1
                agreed += j < len(drafts) and choice == drafts[j]
                stop_reason = self.stop_reason(choice, len(tokens), stops)
                if stop_reason is not None or j == len(drafts) or choice != drafts[j]:
                    break
            drafted.append(len(drafts))
            accepted.append(agreed)
            # also when the sequence stopped: the cache then holds what plain decoding's holds at its end
            self.rounds.rollback(cache, kept, ran)
            token = tokens[-1]

        return SpeculativeGeneration(
            prompt_ids=list(start.prompt_ids),
            token_ids=tokens,
            text=self.text(tokens),
            exit_layers=[num_layers] * len(tokens),
            stop_reason=stop_reason,
            first_token_seconds=first_token_seconds,
            near_ties=near_ties,
            drafted=drafted,
            accepted=accepted,
        )
