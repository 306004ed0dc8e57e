"""PostGRAG's building blocks (section 3.3): the style extractor and the style-enhanced decoder."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class StyleExtractor(nn.Module):
    """SE_P / SE_G (section 3.3.1, 3.3.3): persona-queried attention, then masked mean pooling.

    Query E_P; key and value the concatenated context ([E_H; E_RG] for S_P, [E_H; E_RP] for
    S_G). Pooling over the persona's real tokens gives one style vector per sample.
    """

    def __init__(self, hidden_size: int, num_heads: int = 4, *, zero_init: bool = True):
        super().__init__()
        heads = num_heads if hidden_size % num_heads == 0 else 1
        self.attention = nn.MultiheadAttention(hidden_size, heads, batch_first=True)
        if zero_init:
            # S starts at 0, so adding it to every decoder layer leaves a pretrained decoder as it
            # was until the extractor learns; gradients still reach out_proj at the first step.
            nn.init.zeros_(self.attention.out_proj.weight)
            nn.init.zeros_(self.attention.out_proj.bias)

    def forward(
        self, persona: torch.Tensor, persona_mask: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        dtype = self.attention.out_proj.weight.dtype
        attended, _ = self.attention(
            persona.to(dtype), context.to(dtype), context.to(dtype),
            key_padding_mask=~context_mask.bool(), need_weights=False,
        )
        weights = persona_mask.to(attended.dtype).unsqueeze(-1)
        return (attended * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder's transformer layers: BART .layers, T5 .block, Llama/Qwen .layers, GPT-2 .h."""
    decoder = model.get_decoder()
    for name in ("layers", "block", "h"):
        layers = getattr(decoder, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"Cannot find the decoder layers of {type(model).__name__}; expected .layers, .block or .h")


class StyleEnhancedDecoder:
    """Add a style vector to the output of every decoder layer: h_i <- S + h_i (section 3.3.2).

    Forward hooks on the backbone's own decoder layers, so one implementation serves BART, T5
    and decoder-only models. Hooks do nothing unless a style is set with ``applied``; for a
    decoder-only model the same layers also do the encoding, which must stay unstyled.
    """

    def __init__(self, layers: nn.ModuleList):
        self._style: torch.Tensor | None = None
        self._last_position_on_prefill = False
        self._handles = [layer.register_forward_hook(self._hook) for layer in layers]

    @contextlib.contextmanager
    def applied(self, style: torch.Tensor, *, last_position_on_prefill: bool = False) -> Iterator[None]:
        """Add ``style`` (B, d) inside this block.

        last_position_on_prefill: when a multi-token call arrives (a decoder-only generation's
        prompt H + <agent>), style only its last position, the response's start tag: H is
        "encoder state" and was unstyled in training; single-token steps are all response.
        """
        previous = self._style, self._last_position_on_prefill
        self._style, self._last_position_on_prefill = style, last_position_on_prefill
        try:
            yield
        finally:
            self._style, self._last_position_on_prefill = previous

    def _hook(self, module, args, output):
        style = self._style
        if style is None:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        add = style.to(hidden.dtype)
        if add.size(0) != hidden.size(0):  # beam search / several samples per prompt
            add = add.repeat_interleave(hidden.size(0) // add.size(0), dim=0)
        add = add.unsqueeze(1)
        if self._last_position_on_prefill and hidden.size(1) > 1:
            position = torch.zeros(1, hidden.size(1), 1, dtype=hidden.dtype, device=hidden.device)
            position[:, -1] = 1
            add = add * position
        hidden = hidden + add
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
