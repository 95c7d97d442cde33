"""Per-request logits processors, applied before temperature and top-k/top-p (vLLM's order).

Order: grammar bitmask, allowed_token_ids, bad_words, min_tokens (EOS/stop ids banned),
logit_bias, then the penalties (repetition on prompt+output, frequency and presence on output),
all penalised rows at once (engine/layers/penalties.py).
Everything here sees plain tensors plus each row's ScheduledSeq; rows without any of these
settings are left untouched, so a batch without them costs nothing.
"""

import torch

from engine.core.scheduler_output import ScheduledSeq
from engine.layers.penalties import apply_penalties

NEG_INF = float("-inf")


def process_logits(logits: torch.Tensor, seqs: list[ScheduledSeq]) -> torch.Tensor:
    """`logits` [N, V] float32 on any device; returns a processed copy (the input stays raw)."""
    if not any(_needs_processing(s) for s in seqs):
        return logits
    # Contiguous: engine/layers/penalties.py works on a flat view.
    raw, logits = logits, logits.clone(memory_format=torch.contiguous_format)
    for i, s in enumerate(seqs):
        if _needs_masking(s):
            _process_row(logits[i], s)
            if not torch.isfinite(logits[i]).any():
                # Nothing allowed (a grammar whose text no token can continue): sample from the
                # model instead of crashing; the engine sees the grammar reject it and stops.
                logits[i] = raw[i]
    rows = [i for i, s in enumerate(seqs) if s.params.has_penalties]
    apply_penalties(logits, rows, [seqs[i] for i in rows])
    return logits


def _needs_processing(s: ScheduledSeq) -> bool:
    return _needs_masking(s) or s.params.has_penalties


def _needs_masking(s: ScheduledSeq) -> bool:
    """Everything but the penalties, which run for all rows at once (engine/layers/penalties.py)."""
    p = s.params
    return bool(s.grammar_bitmask is not None or s.banned_token_ids or p.allowed_token_ids
                or p._bad_words_token_ids or p.logit_bias)


def _process_row(row: torch.Tensor, s: ScheduledSeq) -> None:
    p, vocab = s.params, row.numel()
    if s.grammar_bitmask is not None:
        row.masked_fill_(~unpack_bitmask(s.grammar_bitmask, vocab).to(row.device), NEG_INF)
    if p.allowed_token_ids:
        keep = torch.zeros(vocab, dtype=torch.bool, device=row.device)
        keep[torch.tensor(p.allowed_token_ids, dtype=torch.long, device=row.device)] = True
        row.masked_fill_(~keep, NEG_INF)
    banned = list(s.banned_token_ids or ()) + bad_word_bans(p._bad_words_token_ids,
                                                            s.output_token_ids)
    if banned:
        row[torch.tensor(banned, dtype=torch.long, device=row.device)] = NEG_INF
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=row.device)
        row[ids] += torch.tensor(list(p.logit_bias.values()), dtype=row.dtype, device=row.device)



def unpack_bitmask(packed: bytes, vocab: int) -> torch.Tensor:
    """xgrammar's bitmask (int32 words, bit j of word w = token 32*w + j) as a bool [vocab]."""
    words = torch.frombuffer(bytearray(packed), dtype=torch.int32).to(torch.int64)
    bits = (words.unsqueeze(-1) >> torch.arange(32)) & 1
    mask = bits.flatten().bool()
    if mask.numel() < vocab:  # logits wider than the tokenizer's vocabulary: padding is banned
        mask = torch.cat([mask, torch.zeros(vocab - mask.numel(), dtype=torch.bool)])
    return mask[:vocab]


def bad_word_bans(words: list[list[int]] | None, output: list[int]) -> list[int]:
    """A bad word's last token is banned when the output already ends with the rest of it."""
    bans = []
    for ids in words or ():
        prefix = ids[:-1]
        if not prefix or (len(output) >= len(prefix) and output[-len(prefix):] == prefix):
            bans.append(ids[-1])
    return bans
