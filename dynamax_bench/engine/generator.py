"""Early-exit greedy generation, one decoder layer at a time: the batch-1 reference path.

The prompt is processed by one full forward (all layers, like `model.generate`), so the first
generated token comes from the full model (or the pruned one). Every later token is a decode
step that runs layer by layer; at each exit position the strategy's rule may end the step,
the token is read from the exited hidden state through the final norm and LM head, and the
stack's state policy fills the caches of the skipped layers.

`EarlyExitGenerator` decodes one prompt at a time and is the reference that the batched engine
(engine/batched.py) must reproduce token for token (engine/correctness.py checks it). Its prompt
pass can be run once (`prompt_passes`: one forward per set of kept layers, each stateful rule's
state built from it) and decoded from by several strategies, each from its own copy: the checks of
a sweep re-decode a row under many thresholds and classifiers, and the prompt's forward is a large
part of such a re-decode.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from dynamax_bench.engine.neartie import NearTie, ieee_float32
from dynamax_bench.engine.promptstore import PromptForward, PromptStore
from dynamax_bench.engine.rowstate import RowState
from dynamax_bench.engine.rules import ExitHead, ExitPoint, ExitRule, decide
from dynamax_bench.engine.stacks import LayerStack, layer_stack
from dynamax_bench.engine.stopping import StopStrings


@dataclass(frozen=True)
class Strategy:
    """How a token may leave the backbone.

    rule: decides at each exit position (None: no early exit).
    policy: what the skipped layers' caches receive after an exit.
    keep_layers: static pruning, only the first `keep_layers` layers exist (prompt included).
    oracle: run every layer, record the first exit whose prediction equals the full model's.
    """

    rule: ExitRule | None = None
    policy: str | None = None
    keep_layers: int | None = None
    oracle: bool = False

    @classmethod
    def full(cls) -> Strategy:
        return cls()

    @classmethod
    def prune(cls, num_layers: int, dropped: int) -> Strategy:
        """Keep the first `num_layers - dropped` layers; dropping none is the full model (one prompt pass with it)."""
        return cls(keep_layers=num_layers - dropped if dropped else None)

    @classmethod
    def early_exit(cls, rule: ExitRule, policy: str) -> Strategy:
        return cls(rule=rule, policy=policy)

    def prompt_pass(self) -> Hashable:
        """What the prompt's forward depends on: the kept layers and what a stateful rule reads of the
        prompt. Strategies with equal keys prefill the same tensors (thresholds, policies and the
        oracle act on the decode steps only); strategies with the same kept layers share the backbone's
        forward, each key's rule building its own state from it (`EarlyExitGenerator.prompt_passes`)."""
        return self.keep_layers, self.rule.prompt_key() if self.stateful else None

    @property
    def stateful(self) -> bool:
        """Its rule keeps a state: it reads the prompt's pass (engine/rules.py `ExitRule.prefill`)."""
        return self.rule is not None and self.rule.stateful


def prompt_rules(strategies: Sequence[Strategy]) -> dict[Hashable, ExitRule]:
    """The rule that builds each `Strategy.prompt_pass` key's state from a shared prompt pass (stateful
    strategies only: the others' keys have no state)."""
    rules: dict[Hashable, ExitRule] = {}
    for strategy in strategies:
        if strategy.stateful:
            rules.setdefault(strategy.prompt_pass(), strategy.rule)
    return rules


@dataclass
class PromptPass:
    """A prompt's forward on the reference path, before its first token: what every strategy with
    the same `Strategy.prompt_pass` key computes alike. Decoding writes its cache and rule state,
    so each decode takes its own copy (`copy`)."""

    key: Hashable  # the Strategy.prompt_pass() it was computed for
    prompt_ids: list[int]
    cache: Cache
    state: RowState
    hidden: Tensor  # (1, T, d): the last kept layer's output
    executed: int  # layers run

    def copy(self) -> PromptPass:
        """A copy to decode from: its own cache, state and hidden state; the key (which holds the rule's
        modules, compared by identity) and the prompt are shared."""
        return dataclasses.replace(self, cache=copy.deepcopy(self.cache), state=copy.deepcopy(self.state),
                                   hidden=self.hidden.clone())


@dataclass
class Generation:
    """One sample's output with its per-token trace."""

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    exit_layers: list[int]  # layers executed to produce each generated token
    stop_reason: str  # eos | stop_string | max_new_tokens (| through: a check's truncated run, engine/correctness.py)
    # Wall time from the call to the first token (the prompt's forward, where no exit is taken):
    # latency splits it from the decode steps, where early exit saves. Measured with
    # perf_counter after the token's `.item()`, which waits for the device.
    first_token_seconds: float = 0.0
    # Decisions the batch shape could have flipped (batched engine only; engine/neartie.py).
    near_ties: list[NearTie] = field(default_factory=list)


class EngineBase:
    """What both engine paths share: the stack, exit points, stop criteria and logits processors."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        exit_layers: Sequence[int],
        max_new_tokens: int,
        repetition_penalty: float = 1.0,
        stop_strings: Sequence[str] = (),
        eos_token_ids: Sequence[int] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        ieee_float32(model.device, model.dtype)
        self.stack: LayerStack = layer_stack(model)
        bad = [e for e in exit_layers if not 1 <= e < self.stack.num_layers]
        if bad:
            raise ValueError(f"exit layers {bad} out of range for {self.stack.num_layers} layers")
        self.points = {
            layer: ExitPoint(index=i, layer=layer, head=ExitHead(self.stack.head))
            for i, layer in enumerate(sorted(exit_layers))
        }
        self.max_new_tokens = max_new_tokens
        self.stop_strings = tuple(stop_strings)
        if eos_token_ids is None:
            eos = model.generation_config.eos_token_id
            eos_token_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        self.eos_token_ids = set(eos_token_ids)
        self.processors = LogitsProcessorList()
        if repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(penalty=repetition_penalty))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def check(self, strategy: Strategy) -> None:
        if strategy.rule is not None:
            if strategy.policy is None:
                raise ValueError("an early-exit strategy needs a state policy")
            self.stack.check_policy(strategy.policy)
        if strategy.keep_layers is not None and not 1 <= strategy.keep_layers <= self.stack.num_layers:
            raise ValueError(f"cannot keep {strategy.keep_layers} of {self.stack.num_layers} layers")

    def tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        """A prompt's token ids (token ids pass through, so callers can tokenise outside a timing)."""
        return self.tokenizer(prompt).input_ids if isinstance(prompt, str) else list(prompt)

    def stop_watch(self) -> StopStrings:
        return StopStrings(self.tokenizer, self.stop_strings)

    def stop_reason(self, token: int, count: int, stops: StopStrings) -> str | None:
        """Why the sequence ends after its `count`-th token `token` (None: it goes on)."""
        if token in self.eos_token_ids:
            return "eos"
        if stops.push(token):
            return "stop_string"
        if count >= self.max_new_tokens:
            return "max_new_tokens"
        return None

    def truncate(self, text: str) -> str:
        """Cut at the first stop string, as lm-eval's `until` does."""
        for stop in self.stop_strings:
            text = text.split(stop)[0]
        return text

    def text(self, tokens: list[int]) -> str:
        return self.truncate(self.tokenizer.decode(tokens, skip_special_tokens=True))


class EarlyExitGenerator(EngineBase):
    """Greedy decoding with per-token early exit over a transformers model's own layers, one prompt at a time."""

    @torch.inference_mode()
    def prompt_pass(self, prompt: str | Sequence[int], strategy: Strategy) -> PromptPass:
        """The prompt's forward through every kept layer (and a stateful rule's pass over it)."""
        return self.prompt_passes(prompt, [strategy])[strategy.prompt_pass()]

    @torch.inference_mode()
    def prompt_passes(self, prompt: str | Sequence[int], strategies: Sequence[Strategy],
                      store: PromptStore | None = None) -> dict[Hashable, PromptPass]:
        """Each strategy's prompt pass by its `Strategy.prompt_pass` key, one forward per set of kept layers:
        every stateful rule builds its state from that forward's hidden states at the exits, the tensors a
        pass of its own computes. The passes of one forward share its cache: decode each from a `.copy()`.
        With a `store`, a forward it holds is not run again: its passes share the stored tensors too."""
        prompt_ids = self.tokenize(prompt)
        groups: dict[int | None, dict[Hashable, Strategy]] = {}
        for strategy in strategies:
            self.check(strategy)
            groups.setdefault(strategy.keep_layers, {}).setdefault(strategy.prompt_pass(), strategy)
        passes: dict[Hashable, PromptPass] = {}
        for layers, keyed in groups.items():
            num_layers = layers or self.stack.num_layers
            stored = (id(self.model), tuple(self.points), num_layers, tuple(prompt_ids))
            forward = store.get(stored) if store is not None else None
            if forward is None:
                forward = self._prefill(torch.tensor([prompt_ids], dtype=torch.long, device=self.device), num_layers)
                if store is not None:
                    store.put(stored, forward)
            for key, rule in prompt_rules(list(keyed.values())).items():
                if key not in forward.states:
                    forward.states[key] = {}
                    for layer, hidden in forward.exits.items():
                        rule.prefill(self.points[layer], hidden, forward.states[key])
            passes.update({key: PromptPass(key=key, prompt_ids=prompt_ids, cache=forward.cache,
                                           state=forward.states.get(key, {}), hidden=forward.hidden,
                                           executed=num_layers) for key in keyed})
        return passes

    @torch.inference_mode()
    def generate(self, prompt: str | Sequence[int], strategy: Strategy,
                 on_first_token: Callable[[], None] | None = None, through: int | None = None,
                 start: PromptPass | None = None) -> Generation:
        """`on_first_token` is called once the first token is read (the latency rule marks its clock there);
        `through`: stop after that many tokens at most (a check of a batched row's first tokens); `start`: the
        prompt's pass, computed before (`prompt_pass`, same key), which this call consumes (pass `.copy()` to reuse it)."""
        self.check(strategy)
        started = time.perf_counter()
        if start is None:
            start = self.prompt_pass(prompt, strategy)
        elif start.key != strategy.prompt_pass() or start.prompt_ids != self.tokenize(prompt):
            raise ValueError("a prompt pass decodes only its own prompt under strategies with its prompt_pass key")
        prompt_ids, cache, state = start.prompt_ids, start.cache, start.state
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        hidden, executed, exit_hiddens = start.hidden, start.executed, []
        stops = self.stop_watch()
        tokens: list[int] = []
        exits: list[int] = []
        first_token_seconds = 0.0
        while True:
            token = self._pick(hidden, input_ids)
            if not tokens:
                first_token_seconds = time.perf_counter() - started
                if on_first_token is not None:
                    on_first_token()
            if strategy.oracle and tokens:
                executed = self._oracle_exit(token, input_ids, exit_hiddens)
            tokens.append(token)
            exits.append(executed)
            input_ids = torch.cat([input_ids, input_ids.new_tensor([[token]])], dim=1)
            stop_reason = self.stop_reason(token, len(tokens), stops)
            if stop_reason is None and through is not None and len(tokens) >= through:
                stop_reason = "through"
            if stop_reason is not None:
                break
            hidden, executed, exit_hiddens = self._forward(input_ids, cache, strategy, state)

        return Generation(
            prompt_ids=prompt_ids,
            token_ids=tokens,
            text=self.text(tokens),
            exit_layers=exits,
            stop_reason=stop_reason,
            first_token_seconds=first_token_seconds,
        )

    def _prefill(self, input_ids: Tensor, num_layers: int) -> PromptForward:
        """The whole prompt (1, T) through the first `num_layers` layers, keeping the hidden states at every
        exit on the way (the stateful rules read them) and the last layer's."""
        stack = self.stack
        cache = stack.new_cache()
        hidden = stack.embed(input_ids)
        inputs = stack.step_inputs(hidden, cache, torch.ones_like(input_ids))
        exits: dict[int, Tensor] = {}
        for index in range(num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
            if index + 1 in self.points:
                exits[index + 1] = hidden
        return PromptForward(cache=cache, hidden=hidden, exits=exits)

    def _forward(
        self, input_ids: Tensor, cache: Cache, strategy: Strategy, state: RowState
    ) -> tuple[Tensor, int, list[Tensor]]:
        """One decode step (the last token of input_ids): the hidden state to read the token from, the
        layers executed, and (for the oracle) the hidden states seen at every exit."""
        stack = self.stack
        attention_mask = torch.ones_like(input_ids)
        hidden = stack.embed(input_ids[:, -1:])
        inputs = stack.step_inputs(hidden, cache, attention_mask)
        num_layers = strategy.keep_layers or stack.num_layers
        rule = strategy.rule
        exit_hiddens: list[Tensor] = []
        for index in range(num_layers):
            hidden = stack.layer(index, hidden, cache, inputs)
            point = self.points.get(index + 1)
            if point is None:
                continue
            if strategy.oracle:
                exit_hiddens.append(hidden)
            if rule is None:
                continue
            if decide(rule, point, hidden, state)[1].item():
                if rule.stateful:
                    for later in self.points.values():
                        if later.layer > point.layer:
                            rule.advance(later, hidden, state)
                stack.fill_skipped(strategy.policy, point.layer, hidden, cache, inputs)
                return hidden, point.layer, exit_hiddens
        return hidden, num_layers, exit_hiddens

    def _scores(self, hidden: Tensor, input_ids: Tensor) -> Tensor:
        return self.processors(input_ids, self.stack.head(hidden[:, -1:, :]))

    def _pick(self, hidden: Tensor, input_ids: Tensor) -> int:
        return int(self._scores(hidden, input_ids).argmax(dim=-1).item())

    def _oracle_exit(self, token: int, input_ids: Tensor, exit_hiddens: list[Tensor]) -> int:
        """First exit whose greedy token equals the full model's; L when none does."""
        for point, hidden in zip(self.points.values(), exit_hiddens):
            if self._pick(hidden, input_ids) == token:
                return point.layer
        return self.stack.num_layers
