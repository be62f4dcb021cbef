"""A DynamicCache with room reserved for the tokens still to come (the `hf` backend's decode loop).

transformers' DynamicLayer appends each step's key/value with `torch.cat`, copying the whole cache every step
(on CPU, for a batch of 64 rows of 400 tokens, ~300 us per tensor against ~450 us for the attention itself).
`reserve(cache, extra)` moves each plain DynamicLayer's keys/values into buffers with `extra` free positions:
a step writes its position in place and the layer's `keys`/`values` are views of the filled part (SDPA
takes them strided). Rows still leave the batch (`batch_select_indices`), which transformers' StaticCache
cannot do. A sliding-window layer is replaced only while the window cannot fill (cached + `extra` positions
below it: it then behaves as a plain layer, and keeps its `is_sliding` flag for the masks); other layer types
are left as they are.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are the first `length` positions of larger buffers."""

    def __init__(self, layer: DynamicLayer, extra: int):
        super().__init__()
        self.is_sliding = layer.is_sliding  # the masks pick the sliding layers by this flag
        keys, values = layer.keys, layer.values
        self.device, self.length = keys.device, keys.shape[-2]
        self._keys = keys.new_empty(*keys.shape[:-2], self.length + extra, keys.shape[-1])
        self._values = values.new_empty(*values.shape[:-2], self.length + extra, values.shape[-1])
        self._keys[..., :self.length, :] = keys
        self._values[..., :self.length, :] = values
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._keys[..., :self.length, :], self._values[..., :self.length, :]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # more than was reserved: grow to twice the size (a fallback)
            grow = max(end, 2 * self._keys.shape[-2]) - self._keys.shape[-2]
            self._keys, self._values = (torch.cat([t, t.new_empty(*t.shape[:-2], grow, t.shape[-1])], dim=-2)
                                        for t in (self._keys, self._values))
        self._keys[..., self.length:end, :] = key_states
        self._values[..., self.length:end, :] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.length -= abs(tokens_to_remove)
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._keys = self._keys.repeat_interleave(repeats, dim=0)
        self._values = self._values.repeat_interleave(repeats, dim=0)
        self._views()

    def batch_select_indices(self, indices) -> None:
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._views()


def reserve(cache, extra: int):
    """`cache` with each initialized DynamicLayer (or sliding-window layer whose window cannot fill) replaced
    by a ReservedLayer with `extra` free positions; returns the cache."""
    for i, layer in enumerate(cache.layers):
        if not (layer.is_initialized and layer.keys is not None and layer.keys.dim() == 4):
            continue
        if type(layer) is DynamicSlidingWindowLayer:
            if layer.record_past or layer.cumulative_length + extra >= layer.sliding_window:
                continue
        elif type(layer) is not DynamicLayer:
            continue
        cache.layers[i] = ReservedLayer(layer, extra)
    return cache
