"""Incremental detokenization: a completion's text extended by its new tokens only.

Decoding the whole output again every step is O(n^2) in the output length. A fast tokenizer's
`tokenizers.decoders.DecodeStream` emits each new piece of text once it is valid UTF-8; tokens
that end inside a character are held back until it completes. The text returned always equals
`tokenizer.decode(all ids)`: a held-back tail is decoded with a few tokens of context (shown as
U+FFFD, exactly as a full decode shows it). Slow tokenizers, and tokenizers whose decode cleans up
spaces (not stable under appending), keep the full decode.
"""

from tokenizers.decoders import DecodeStream

# Tokens of already emitted text decoded before a held-back tail, so the decoder sees the tail
# in context (leading-space rules) and the tail's text can be cut from the end.
TAIL_CONTEXT = 4


class IncrementalDetokenizer:
    def __init__(self, tokenizer, skip_special_tokens: bool):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.backend = _stream_backend(tokenizer)
        self.stream = DecodeStream(skip_special_tokens=skip_special_tokens) \
            if self.backend is not None else None
        self.text = ""  # text of the emitted tokens
        self.num_fed = 0
        self.num_emitted = 0  # tokens [0, num_emitted) are in self.text

    def decode(self, token_ids: list[int]) -> str:
        """The text of `token_ids`, which extend the ids of the previous call."""
        if self.stream is None or len(token_ids) < self.num_fed:
            return self._full(token_ids)
        try:
            for i in range(self.num_fed, len(token_ids)):
                piece = self.stream.step(self.backend, token_ids[i])
                if piece is not None:
                    self.text += piece
                    self.num_emitted = i + 1
        except Exception:  # noqa: BLE001 - an id the stream cannot take: decode in full from now
            self.stream = None
            return self._full(token_ids)
        self.num_fed = len(token_ids)
        if self.num_emitted == len(token_ids):
            return self.text
        return self.text + self._tail(token_ids)

    def _tail(self, token_ids: list[int]) -> str:
        start = max(0, self.num_emitted - TAIL_CONTEXT)
        head = self._full(token_ids[start:self.num_emitted])
        whole = self._full(token_ids[start:])
        if whole.startswith(head):
            return whole[len(head):]
        return self._full(token_ids)[len(self.text):]

    def _full(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=self.skip_special_tokens)


def _stream_backend(tokenizer):
    """The `tokenizers.Tokenizer` behind a fast tokenizer, or None where a stream would differ
    from the full decode."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "decoder"):
        return None
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return None
    return backend
