"""Stop strings, checked incrementally on each new token's text.

Decoding a token alone can differ from decoding it in context (a SentencePiece word-start
marker, a UTF-8 character split over byte tokens, clean-up of spaces before punctuation), so
each new token's text is the suffix that the token adds to the decode of a short window of the
tokens before it (the offsets scheme of text-generation-inference). The window starts where the
committed text ends on a whole character, so committed text + pending text is the decode of the
whole output, and a stop string is searched only where that text changed: the same answer as
decoding everything and searching it, in time independent of the output's length.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

INCOMPLETE = "\ufffd"  # what a decode shows for a character whose bytes have not all arrived


class StopStrings:
    """One sequence's stop-string watch: `push` each generated token, it says when a stop string
    appears in the decoded output (special tokens skipped, as in the final text)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.tokens: list[int] = []
        self.text = ""  # committed: the decode of tokens[:read]
        self.prefix = 0  # the window's first token
        self.read = 0  # tokens whose text is committed

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def push(self, token: int) -> bool:
        """Add a token; True when the output now contains a stop string."""
        if not self.stops:
            return False
        self.tokens.append(token)
        before = self._decode(self.tokens[self.prefix:self.read])
        window = self._decode(self.tokens[self.prefix:])
        if not window.startswith(before):  # the token rewrote text before it: start again from the first token
            self.text, self.prefix, self.read = "", 0, 0
            before, window = "", self._decode(self.tokens)
        pending = window[len(before):]
        start = max(0, len(self.text) - self.longest + 1)  # where a stop string ending in the new text can start
        found = any(stop in self.text[start:] + pending for stop in self.stops)
        if pending and not pending.endswith(INCOMPLETE):
            self.text += pending
            self.prefix, self.read = self.read, len(self.tokens)
        return found
