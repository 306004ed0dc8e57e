"""GRAG models on a Hugging Face backbone (sections 3.2-3.5), training losses and persistence.

``GRAGModel.forward(batch)`` returns every loss term of the configured method, so it is the
one entry point DDP wraps. Encoder-decoder backbones (BART, T5) use their encoder for the
encoding steps; decoder-only ones (GPT-2, Llama, Qwen, SmolLM2) use the decoder itself
(section 4.3.2): a segment's "encoding" is the last layer's hidden states, and PostGRAG's
"E_H as encoder state" is the decoder's key/value cache of H, which the response continues.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from .backbone import load_backbone, resolve_device
from .config import GRAGConfig
from .inputs import AGENT, IGNORE_INDEX, add_tag_tokens
from .losses import cjepa_loss, last_token, nwp_loss, token_nll
from .modules import StyleEnhancedDecoder, StyleExtractor, decoder_layers

# Merge encoder calls only while padding adds at most this fraction of extra tokens: one call
# is cheaper than two, but not when a long history pads a batch of short responses 10-fold.
MAX_PADDING_OVERHEAD = 0.35


def _pad_right(tensors: list[torch.Tensor], dim: int, value=0) -> list[torch.Tensor]:
    width = max(t.size(dim) for t in tensors)
    out = []
    for t in tensors:
        if t.size(dim) < width:
            shape = list(t.shape)
            shape[dim] = width - t.size(dim)
            t = torch.cat([t, t.new_full(shape, value)], dim=dim)
        out.append(t)
    return out


class GRAGModel(nn.Module):
    def __init__(self, backbone: nn.Module, config: GRAGConfig, *, agent_token_id: int):
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.agent_token_id = agent_token_id
        self.is_encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
        hidden = backbone.config.get_text_config().hidden_size if hasattr(backbone.config, "get_text_config") else backbone.config.hidden_size
        if config.method == "postgrag":
            self.se_p = StyleExtractor(hidden, config.style_heads, zero_init=config.style_zero_init)
            self.se_g = StyleExtractor(hidden, config.style_heads, zero_init=config.style_zero_init)
        self.style = StyleEnhancedDecoder(decoder_layers(backbone))

    # -- encoding --------------------------------------------------------------------------
    def _decoder_stack(self) -> nn.Module:
        return self.backbone.get_decoder()

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, *, use_cache: bool = False):
        """Encode(x): last-layer hidden states (N, T, d), and for decoder-only the key/value cache."""
        if self.is_encoder_decoder:
            return self.backbone.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state, None
        out = self._decoder_stack()(input_ids=ids, attention_mask=mask, use_cache=use_cache)
        if not use_cache:
            return out.last_hidden_state, None
        # transformers 5 names it cache; reading past_key_values there only warns that it is deprecated.
        return out.last_hidden_state, (out.cache if "cache" in out else out.past_key_values)

    def encode_segments(self, segments: dict[str, tuple[torch.Tensor, torch.Tensor]], *, cache_for: set[str] = frozenset()):
        """Encode several segments with as few encoder calls as padding allows.

        Segments of similar width share one call (rows stacked, padded to the widest); returns
        {name: (hidden, mask, kv)} where kv is a list of per-layer (keys, values) for the
        names in ``cache_for`` (decoder-only only).
        """
        order = sorted(segments, key=lambda n: segments[n][0].size(1))
        groups: list[list[str]] = []
        for name in order:
            if groups:
                group = groups[-1] + [name]
                real = sum(segments[n][0].numel() for n in group)
                padded = sum(segments[n][0].size(0) for n in group) * segments[name][0].size(1)
                if padded <= (1 + MAX_PADDING_OVERHEAD) * real:
                    groups[-1] = group
                    continue
            groups.append([name])
        result = {}
        for group in groups:
            ids = torch.cat(_pad_right([segments[n][0] for n in group], 1, 0), dim=0)
            mask = torch.cat(_pad_right([segments[n][1] for n in group], 1, 0), dim=0)
            want_cache = not self.is_encoder_decoder and any(n in cache_for for n in group)
            hidden, cache = self.encode(ids, mask, use_cache=want_cache)
            start = 0
            for n in group:
                rows, width = segments[n][0].shape
                kv = None
                if want_cache and n in cache_for:
                    kv = [(layer.keys[start : start + rows, :, :width], layer.values[start : start + rows, :, :width]) for layer in cache.layers]
                result[n] = (hidden[start : start + rows, :width], segments[n][1], kv)
                start += rows
        return result

    # -- decoding --------------------------------------------------------------------------
    def _labels(self, target_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        return target_ids.masked_fill(target_mask == 0, IGNORE_INDEX)

    def decode_from_encoder(self, states: torch.Tensor, states_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Seq2seq: logits of ``labels`` given encoder states (teacher forcing)."""
        from transformers.modeling_outputs import BaseModelOutput

        decoder_input_ids = self.backbone.prepare_decoder_input_ids_from_labels(labels=labels)
        out = self.backbone(
            encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=states_mask,
            decoder_input_ids=decoder_input_ids, decoder_attention_mask=(labels != IGNORE_INDEX).long(), use_cache=False,
        )
        return out.logits

    def decode_from_cache(self, kv, prefix_mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder-only: continue a cached prefix with <agent> + labels; logits at label positions.

        Returns (logits of the real label positions (M, V), their labels (M,)).
        """
        from transformers import DynamicCache

        n, width = labels.shape
        target_mask = (labels != IGNORE_INDEX).long()
        inputs = torch.cat([labels.new_full((n, 1), self.agent_token_id), labels[:, :-1].clamp(min=0)], dim=1)
        cache = DynamicCache()
        for layer_idx, (k, v) in enumerate(kv):
            cache.update(k, v, layer_idx)
        attention = torch.cat([prefix_mask, torch.ones_like(target_mask)], dim=1)
        positions = prefix_mask.sum(dim=1, keepdim=True) + torch.arange(width, device=labels.device)
        stack = self._decoder_stack()
        # transformers 5 renamed past_key_values to cache; accept both so >=4.57 keeps working.
        cache_kw = "cache" if "cache" in inspect.signature(stack.forward).parameters else "past_key_values"
        hidden = stack(
            input_ids=inputs, attention_mask=attention, position_ids=positions, use_cache=True, **{cache_kw: cache},
        ).last_hidden_state
        keep = target_mask.bool()
        return self.backbone.get_output_embeddings()(hidden[keep]), labels[keep]

    # -- losses ----------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], *, alpha: float | None = None, beta: float | None = None) -> dict:
        """All loss terms of the method (Eq. 2 and 3) for one batch.

        Returns loss (weighted total), l_p, and l_g / l_cjepa when their weight is non-zero
        (work whose weight is zero is skipped, not multiplied by zero), plus nll (B,) and
        n_tokens (B,): each sample's summed NLL of the reference's tokens without the final eos,
        for bits per character.
        """
        alpha = self.config.effective_alpha if alpha is None else alpha
        beta = self.config.effective_beta if beta is None else beta
        if self.config.method == "postgrag":
            return self._forward_post(batch, alpha=alpha, beta=beta)
        return self._forward_pre(batch, beta=beta)

    def _nll_terms(self, logits: torch.Tensor, labels: torch.Tensor, out: dict, *, rows: int, flat_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NWP loss, and per-sample NLL sums of the reference (eos excluded) into ``out``."""
        nll = token_nll(logits, labels)
        valid = labels != IGNORE_INDEX
        if flat_rows is None:  # (B, T) layout: drop each row's last real position (eos)
            counts = valid.sum(dim=1)
            ref = valid.clone()
            ref[torch.arange(rows, device=labels.device), (counts - 1).clamp(min=0)] = False
            out["nll"] = (nll * ref).sum(dim=1).detach()
            out["n_tokens"] = ref.sum(dim=1)
        else:  # flattened real positions with their row index
            last = torch.zeros_like(flat_rows, dtype=torch.bool)
            last[:-1] = flat_rows[1:] != flat_rows[:-1]
            last[-1] = True
            ref = (~last).float()
            out["nll"] = torch.zeros(rows, device=labels.device).index_add(0, flat_rows, (nll * ref).detach())
            out["n_tokens"] = torch.zeros(rows, dtype=torch.long, device=labels.device).index_add(0, flat_rows, (~last).long())
        return nll.sum() / valid.sum().clamp(min=1)

    def _forward_pre(self, batch: dict, *, beta: float) -> dict:
        """PreSFT and PreGRAG (section 3.2): one context sequence; Eq. 2."""
        out: dict = {}
        ctx_ids, ctx_mask = batch["context_ids"], batch["context_mask"]
        labels = self._labels(batch["target_ids"], batch["target_mask"])
        rows = ctx_ids.size(0)
        if self.is_encoder_decoder:
            segments = {"context": (ctx_ids, ctx_mask)}
            if beta > 0:
                segments["personalised"] = (batch["personalised_ids"], batch["personalised_mask"])
                segments["generic"] = (batch["generic_ids"], batch["generic_mask"])
            enc = self.encode_segments(segments)
            states = enc["context"][0]
            logits = self.decode_from_encoder(states, ctx_mask, labels)
            out["l_p"] = self._nll_terms(logits, labels, out, rows=rows)
            context_vec = last_token(states, ctx_mask) if beta > 0 else None
        else:
            # [context; <agent>; R_P]: the <agent> position predicts R_P's first token.
            lengths = ctx_mask.sum(dim=1)
            t_len = batch["target_mask"].sum(dim=1)
            width = int((lengths + 1 + t_len).max())
            seq = ctx_ids.new_zeros((rows, width))  # padding id is irrelevant: the mask hides it
            seq_mask = torch.zeros_like(seq)
            seq_labels = torch.full_like(seq, IGNORE_INDEX)
            for i in range(rows):
                n, m = int(lengths[i]), int(t_len[i])
                seq[i, :n] = ctx_ids[i, :n]
                seq[i, n] = self.agent_token_id
                seq[i, n + 1 : n + 1 + m] = batch["target_ids"][i, :m]
                seq_mask[i, : n + 1 + m] = 1
                seq_labels[i, n : n + m] = batch["target_ids"][i, :m]
            hidden = self._decoder_stack()(input_ids=seq, attention_mask=seq_mask, use_cache=False).last_hidden_state
            keep = seq_labels != IGNORE_INDEX
            # Logits only where there is a label: the vocabulary projection of the context would
            # cost more than the rest of the step for a 49k vocabulary.
            logits = self.backbone.get_output_embeddings()(hidden[keep])
            flat_rows = torch.arange(rows, device=seq.device).unsqueeze(1).expand_as(seq)[keep]
            out["l_p"] = self._nll_terms(logits, seq_labels[keep], out, rows=rows, flat_rows=flat_rows)
            context_vec = last_token(hidden, ctx_mask) if beta > 0 else None
            if beta > 0:
                enc = self.encode_segments({
                    "personalised": (batch["personalised_ids"], batch["personalised_mask"]),
                    "generic": (batch["generic_ids"], batch["generic_mask"]),
                })
        loss = out["l_p"]
        if beta > 0:
            out["l_cjepa"] = cjepa_loss(
                context_vec, last_token(enc["personalised"][0], enc["personalised"][1]),
                last_token(enc["generic"][0], enc["generic"][1]),
            )
            loss = loss + beta * out["l_cjepa"]
        out["loss"] = loss
        return out

    def style_vectors(self, enc: dict, *, generic_style: bool = False) -> torch.Tensor:
        """S_P = SE_P(E_P; [E_H; E_RG]) or S_G = SE_G(E_P; [E_H; E_RP]) (sections 3.3.1, 3.3.3)."""
        e_p, m_p, _ = enc["persona"]
        e_h, m_h, _ = enc["history"]
        other = enc["personalised" if generic_style else "generic"]
        context = torch.cat([e_h, other[0]], dim=1)
        context_mask = torch.cat([m_h, other[1]], dim=1)
        extractor = self.se_g if generic_style else self.se_p
        return extractor(e_p, m_p, context, context_mask)

    def _forward_post(self, batch: dict, *, alpha: float, beta: float) -> dict:
        """PostGRAG (section 3.3): separate encodings, style vectors, two decodes; Eq. 3."""
        out: dict = {}
        rows = batch["persona_ids"].size(0)
        segments = {
            "persona": (batch["persona_ids"], batch["persona_mask"]),
            "history": (batch["history_ids"], batch["history_mask"]),
            "generic": (batch["generic_ids"], batch["generic_mask"]),
        }
        if alpha > 0 or beta > 0:
            segments["personalised"] = (batch["personalised_ids"], batch["personalised_mask"])
        cache_for = {"history"} | ({"personalised"} if alpha > 0 else set())
        enc = self.encode_segments(segments, cache_for=cache_for)
        s_p = self.style_vectors(enc)
        labels_p = self._labels(batch["target_ids"], batch["target_mask"])
        # Both decodes (R_P from E_H with S_P; R_G from E_RP with S_G) share one decoder call.
        decodes = [("history", labels_p, s_p)]
        if alpha > 0:
            s_g = self.style_vectors(enc, generic_style=True)
            labels_g = self._labels(batch["generic_target_ids"], batch["generic_target_mask"])
            decodes.append(("personalised", labels_g, s_g))
        labels = torch.cat(_pad_right([d[1] for d in decodes], 1, IGNORE_INDEX), dim=0)
        style = torch.cat([d[2] for d in decodes], dim=0)
        with self.style.applied(style):
            if self.is_encoder_decoder:
                states = torch.cat(_pad_right([enc[d[0]][0] for d in decodes], 1, 0), dim=0)
                states_mask = torch.cat(_pad_right([enc[d[0]][1] for d in decodes], 1, 0), dim=0)
                logits = self.decode_from_encoder(states, states_mask, labels)
                keep = labels != IGNORE_INDEX
                flat_rows = torch.arange(labels.size(0), device=labels.device).unsqueeze(1).expand_as(labels)[keep]
                logits, flat_labels = logits[keep], labels[keep]
            else:
                n_layers = len(enc["history"][2])
                kv = []
                for layer in range(n_layers):
                    keys = torch.cat(_pad_right([enc[d[0]][2][layer][0] for d in decodes], 2, 0), dim=0)
                    values = torch.cat(_pad_right([enc[d[0]][2][layer][1] for d in decodes], 2, 0), dim=0)
                    kv.append((keys, values))
                prefix_mask = torch.cat(_pad_right([enc[d[0]][1] for d in decodes], 1, 0), dim=0)
                logits, flat_labels = self.decode_from_cache(kv, prefix_mask, labels)
                keep = labels != IGNORE_INDEX
                flat_rows = torch.arange(labels.size(0), device=labels.device).unsqueeze(1).expand_as(labels)[keep]
        is_p = flat_rows < rows
        out["l_p"] = self._nll_terms(logits[is_p], flat_labels[is_p], out, rows=rows, flat_rows=flat_rows[is_p])
        loss = out["l_p"]
        if alpha > 0:
            out["l_g"] = nwp_loss(logits[~is_p], flat_labels[~is_p])
            loss = loss + alpha * out["l_g"]
        if beta > 0:
            out["l_cjepa"] = cjepa_loss(
                last_token(enc["history"][0], enc["history"][1]),
                last_token(enc["personalised"][0], enc["personalised"][1]),
                last_token(enc["generic"][0], enc["generic"][1]),
            )
            loss = loss + beta * out["l_cjepa"]
        out["loss"] = loss
        return out


def build_model(config: GRAGConfig, *, path: str | None = None) -> tuple[GRAGModel, object]:
    """A fresh GRAGModel (new layers seeded by config.seed) and its tokenizer."""
    torch.manual_seed(config.seed)
    backbone, tokenizer = load_backbone(config, path=path)
    model = GRAGModel(backbone, config, agent_token_id=tokenizer.convert_tokens_to_ids(AGENT))
    return model, tokenizer


def wrap_backbone(backbone: nn.Module, tokenizer, config: GRAGConfig) -> GRAGModel:
    """A GRAGModel around an already-loaded backbone (benchmarks reuse one load for every method)."""
    if add_tag_tokens(tokenizer) or backbone.get_input_embeddings().num_embeddings < len(tokenizer):
        backbone.resize_token_embeddings(len(tokenizer))
    torch.manual_seed(config.seed)
    return GRAGModel(backbone, config, agent_token_id=tokenizer.convert_tokens_to_ids(AGENT))


def save_model(model: GRAGModel, tokenizer, directory: str | Path) -> Path:
    """Write a loadable model folder: backbone/ (HF format), style.pt, grag_config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(directory / "backbone")
    tokenizer.save_pretrained(directory / "backbone")
    extras = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    torch.save(extras, directory / "style.pt")
    (directory / "grag_config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


def load_model(directory: str | Path, *, device: str | None = None) -> tuple[GRAGModel, object]:
    """Load a folder written by save_model, ready for generation."""
    directory = Path(directory)
    config_file = directory / "grag_config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{directory} is not a GRAG model folder (no grag_config.json); train a model first.")
    config = GRAGConfig.from_dict(json.loads(config_file.read_text()))
    if device:
        config = config.replace(device=device)
    if config.qlora:
        from peft import PeftModel

        base, tokenizer = load_backbone(config, adapters=False)
        backbone = PeftModel.from_pretrained(base, str(directory / "backbone"))
        model = GRAGModel(backbone, config, agent_token_id=tokenizer.convert_tokens_to_ids(AGENT))
    else:
        model, tokenizer = build_model(config, path=str(directory / "backbone"))
    model.load_state_dict(torch.load(directory / "style.pt", map_location="cpu"), strict=False)
    model.to(resolve_device(config.device))
    model.eval()
    return model, tokenizer
