"""`attn_implementation="sdpa_varlen"`: SDPA run document by document on packed rows (issue 14).

On a padding-free packed batch (`[1, total]` with position ids restarting at each document, no attention
mask: TRL's packing collator) transformers' `sdpa` builds a `total x total` block-diagonal mask and SDPA on
CPU computes the whole square. Here each document's slice is one causal SDPA call, so attention costs
sum(L_i^2) instead of total^2 and no token is padding. Documents start where the position ids do not
continue (`pos[i] != pos[i-1] + 1`), as in transformers' `find_packed_sequence_indices`. With an attention
mask (a padded batch) or a KV cache it is plain `sdpa`.
"""

from __future__ import annotations

import itertools

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "sdpa_varlen"


def document_bounds(position_ids: torch.Tensor) -> list[int]:
    """[0, start of document 2, ..., len] for one row of position ids."""
    starts = (position_ids[1:] != position_ids[:-1] + 1).nonzero().flatten() + 1
    return [0, *starts.tolist(), len(position_ids)]


def sdpa_varlen_forward(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """query/key/value `[B, heads, L, D]` -> (`[B, L, heads, D]`, None), as transformers' attention functions."""
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows = []
    for b in range(query.shape[0]):
        bounds = document_bounds(position_ids[b if position_ids.shape[0] > 1 else 0])
        rows.append(torch.cat([sdpa_attention_forward(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e],
                                                      value[b:b + 1, :, s:e], None, **kwargs)[0]
                               for s, e in itertools.pairwise(bounds)], dim=1))
    return torch.cat(rows), None


def sdpa_varlen_mask(*args, attention_mask=None, **kwargs):
    """No mask for a full forward without padding (the attention takes the documents from the position ids),
    else sdpa's."""
    if attention_mask is None and kwargs.get("q_length") == kwargs.get("kv_length"):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(NAME, sdpa_varlen_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_varlen_mask)
