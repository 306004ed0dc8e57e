"""Token and key/value-cache helpers of in-process generation and scoring: left padding, a cache
reserved for the whole reply (decoding writes in place), the prompts' common prefix."""
from __future__ import annotations

import functools
from collections.abc import Sequence


def left_pad(rows: Sequence[Sequence[int]], pad_id: int):
    """(ids, attention mask) of token-id rows on CPU, pads on the left so every row ends in the last column."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def reserved_cache(config, *, capacity: int, batch_size: int, prefix=None):
    """A key/value cache for one generate call whose layers write into buffers of ``capacity`` positions.

    ``prefix`` (a one-row cache of the shared prompt prefix) is copied into every row.
    """
    from transformers import DynamicCache

    reserved_layer = _reserved_layer_class()
    layers = [reserved_layer(capacity, batch_size) for _ in range(config.get_text_config(decoder=True).num_hidden_layers)]
    if prefix is not None:
        for layer, cached in zip(layers, prefix.layers):
            layer.update(cached.keys.expand(batch_size, -1, -1, -1), cached.values.expand(batch_size, -1, -1, -1))
    cache = DynamicCache()
    cache.layers = layers
    return cache


@functools.cache
def _reserved_layer_class():
    # Built on first use: transformers is imported lazily (Django code imports this module).
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A ``DynamicLayer`` that keeps its keys and values in a buffer reserved for the whole generation.

        ``DynamicLayer`` appends every decoding step with ``torch.cat``, which copies the whole
        cache each step: profiling 16 prompts of ~600 tokens on CPU (prompt pass and 16 steps),
        that copying was 22 % of the op time, and without it llm_throughput's batches of 16 ran
        7 % faster (issue 6). Here a step writes its positions in place, and attention gets a
        view of the filled part, so it still attends over exactly the real length. Anything that
        replaces the tensors (beam reordering, ``batch_select_indices``) is adopted into a new
        buffer on the next update.
        """

        def __init__(self, capacity: int, batch_size: int):
            super().__init__()
            self.capacity = capacity
            self.batch_size = batch_size
            self._key_buffer = self._value_buffer = None

        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            self._key_buffer = self._value_buffer = None

        def _adopt(self, like_keys, like_values, batch: int, length: int, needed: int) -> None:
            """New buffers for ``batch`` rows holding the first ``length`` positions of the current tensors."""
            import torch

            # Zeros, not empty: a prompt pass done in parts leaves pad columns unwritten, and a
            # masked column must still hold a finite number (0 * NaN is NaN in attention).
            room = max(self.capacity, needed)
            heads, device = like_keys.shape[1], like_keys.device
            keys = torch.zeros((batch, heads, room, like_keys.shape[-1]), dtype=like_keys.dtype, device=device)
            values = torch.zeros((batch, heads, room, like_values.shape[-1]), dtype=like_values.dtype, device=device)
            if length:
                keys[:, :, :length] = self.keys[:, :, :length]
                values[:, :, :length] = self.values[:, :, :length]
            self._key_buffer, self._value_buffer = keys, values

        def write(self, rows: slice, column: int, keys, values) -> None:
            """Write keys/values of some rows at ``column`` (a prompt pass done in parts)."""
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
            if self._key_buffer is None:
                self._adopt(keys, values, self.batch_size, 0, column + keys.shape[-2])
            self._key_buffer[rows, :, column:column + keys.shape[-2]] = keys
            self._value_buffer[rows, :, column:column + values.shape[-2]] = values

        def set_length(self, length: int) -> None:
            self.keys = self._key_buffer[:, :, :length]
            self.values = self._value_buffer[:, :, :length]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.keys.shape[-2] if self.keys.dim() == 4 else 0
            needed = length + key_states.shape[-2]
            buffer = self._key_buffer
            if (buffer is None or needed > buffer.shape[-2] or key_states.shape[0] != buffer.shape[0]
                    or (length and self.keys.data_ptr() != buffer.data_ptr())):
                # First update, or beam search / batch selection replaced the tensors: take the
                # rows as they are now into a new buffer.
                self._adopt(key_states, value_states, key_states.shape[0], length, needed)
            self._key_buffer[:, :, length:needed] = key_states
            self._value_buffer[:, :, length:needed] = value_states
            self.keys = self._key_buffer[:, :, :needed]
            self.values = self._value_buffer[:, :, :needed]
            return self.keys, self.values

    return ReservedLayer


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences (0 for none)."""
    if not sequences:
        return 0
    n = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return n


# Statuses a server answers when it is busy or briefly down: the request is tried again.
