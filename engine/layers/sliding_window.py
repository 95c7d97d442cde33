"""Which keys a query sees: the causal mask, narrowed to a sliding window when a layer has one.

HF's rule (transformers' masking_utils: `causal_mask_function` and `sliding_window_overlay`):
the query at position q sees the key at position k iff 0 <= q - k < window. A layer without a
window (None) sees every earlier key. Every attention path takes its rule from here: the
PyTorch paths build masks with `visible`, the in-place decode kernels start at `first_key`.
"""

import torch


def visible(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """[*q_pos.shape, len(k_pos)] bool: True where the query at q_pos sees the key at k_pos."""
    distance = q_pos.unsqueeze(-1) - k_pos
    seen = distance >= 0
    return seen if window is None else seen & (distance < window)


def first_key(length: int, window: int | None) -> int:
    """The first position the newest query of a `length`-token context sees."""
    return 0 if window is None else max(0, length - window)


def narrows(length: int, window: int | None) -> bool:
    """Whether the window hides any key from some query of a `length`-token context (a window
    at least that long leaves the plain causal mask, and its faster paths)."""
    return window is not None and window < length


def kernel_window(window: int | None) -> int:
    """The in-place kernels' spelling: 0 for no window."""
    return 0 if window is None else int(window)
