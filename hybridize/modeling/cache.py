"""The hybrid model's cache: transformers' DynamicCache, built from config.layer_types.

Linear layers get a `LinearAttentionLayer` (constant-size conv + recurrent state), sliding-window
layers a `DynamicSlidingWindowLayer` (at most `window` entries), full layers a `DynamicLayer`.
The subclass only answers "how long is the sequence?" and "how large is the mask?" the same way on
every supported transformers version: some versions ask a linear layer, which cannot answer, and a
model with no attention layer at all has nothing to ask, so we count tokens ourselves.
"""
from __future__ import annotations

from transformers import DynamicCache
from transformers.cache_utils import LinearAttentionCacheLayerMixin


class HybridCache(DynamicCache):
    def __init__(self, config, **kwargs):
        super().__init__(config=config, **kwargs)
        types = list(config.layer_types)
        self._full = [i for i, t in enumerate(types) if t == "full_attention"]
        self._attention = [i for i, t in enumerate(types) if t != "linear_attention"]
        self._seen_tokens = 0  # only consulted when no layer keeps keys

    def _attention_layer(self, layer_idx: int) -> int | None:
        if not isinstance(self.layers[layer_idx], LinearAttentionCacheLayerMixin):
            return layer_idx
        if self._full:
            return self._full[0]
        return self._attention[0] if self._attention else None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        if layer_idx >= len(self.layers):
            return 0
        idx = self._attention_layer(layer_idx)
        return self._seen_tokens if idx is None else self.layers[idx].get_seq_length()

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        if layer_idx >= len(self.layers):
            return query_length, 0
        idx = self._attention_layer(layer_idx)
        if idx is None:
            return self._seen_tokens + query_length, 0
        return self.layers[idx].get_mask_sizes(query_length)

    @property
    def is_compileable(self) -> bool:
        # A compileable cache makes generate() build 4-D masks up front; the hybrid model builds the
        # masks each kind of layer needs itself, from the 2-D mask.
        return False

    def advance(self, num_tokens: int) -> None:
        """Called by the model after each forward."""
        self._seen_tokens += num_tokens
