"""The reserved KV cache (genstruct_train/generation/reserved_cache.py) against transformers' own layers: the
same keys/values and mask sizes after every update, row selection and repetition, written in place (no copy
of the cache per step), growing past its room, and sliding-window layers replaced only while the window
cannot fill. The decode loop's greedy ids against `model.generate`: tests/test_generation.py."""

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from genstruct_train.generation.reserved_cache import ReservedLayer, reserve


def _kv(g, batch, length):
    return torch.randn(batch, 2, length, 4, generator=g), torch.randn(batch, 2, length, 4, generator=g)


def _same(ours, ref):
    assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values)
    assert ours.get_seq_length() == ref.get_seq_length()
    assert ours.get_mask_sizes(1) == ref.get_mask_sizes(1)


def test_reserved_layer_follows_the_dynamic_layer_and_writes_in_place():
    g = torch.Generator().manual_seed(0)
    ref, first = DynamicLayer(), DynamicLayer()
    prompt = _kv(g, 4, 5)
    ref.update(*prompt)
    first.update(*prompt)
    ours = ReservedLayer(first, extra=3)
    _same(ours, ref)
    buffer = ours._keys.data_ptr()
    for step in range(6):  # 3 steps in the reserved room, then growth
        new = _kv(g, len(ref.keys), 1)
        out_ref, out = ref.update(*new), ours.update(*new)
        assert all(torch.equal(a, b) for a, b in zip(out, out_ref))
        _same(ours, ref)
        if step < 3:
            assert ours._keys.data_ptr() == buffer  # in place: no new buffer while the room lasts
        if step == 1:
            keep = torch.tensor([0, 2, 3])
            ref.batch_select_indices(keep)
            ours.batch_select_indices(keep)
            _same(ours, ref)
            buffer = ours._keys.data_ptr()
    assert ours._keys.shape[-2] == 16  # 5 + 3 positions reserved, then grown to twice that
    ref.batch_repeat_interleave(2)
    ours.batch_repeat_interleave(2)
    _same(ours, ref)


def test_reserve_replaces_sliding_layers_only_while_the_window_cannot_fill():
    g = torch.Generator().manual_seed(1)
    cache = DynamicCache()
    cache.layers = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=16), DynamicSlidingWindowLayer(16)]
    for i in range(3):
        cache.update(*_kv(g, 2, 10 if i < 2 else 14), i)
    reserve(cache, extra=5)  # 10 + 5 < 16: replaced; 14 + 5 >= 16: kept
    assert [type(layer) for layer in cache.layers] == [ReservedLayer, ReservedLayer, DynamicSlidingWindowLayer]
    assert cache.is_sliding == [False, True, True]
