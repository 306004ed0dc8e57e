"""Backbones for GRAG: the pretrained encoder-decoder or decoder-only model GRAG's layers sit on
(paper section 4.3.2), a few-layer random "tiny:" model for tests, and QLoRA's 4-bit base.

Real backbones resolve through modeling.llm.loading (a local folder, MODELS_DIR or the Hugging Face
cache; never a download).
"""
from __future__ import annotations

import copy
import os

import torch
from torch import nn

from modeling.llm.loading import load_tokenizer, resolve_model, unquantised_source

from .config import GRAGConfig
from .inputs import AGENT, add_tag_tokens

TINY_BACKBONES = ("tiny:bart", "tiny:t5", "tiny:llama", "tiny:gpt2")


def _tiny_backbone(kind: str, tokenizer) -> nn.Module:
    """A few-layer, narrow model of the given family with random weights (tests, smoke runs)."""
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    vocab, pad, eos = len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    if kind == "tiny:bart":
        cfg = BartConfig(
            vocab_size=vocab, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=1024,
            pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, decoder_start_token_id=eos, forced_eos_token_id=None,
        )
        return BartForConditionalGeneration(cfg)
    if kind == "tiny:t5":
        cfg = T5Config(
            vocab_size=vocab, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad,
        )
        return T5ForConditionalGeneration(cfg)
    if kind == "tiny:llama":
        cfg = LlamaConfig(
            vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(cfg)
    if kind == "tiny:gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=2048, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
        return GPT2LMHeadModel(cfg)
    raise ValueError(f"Unknown tiny backbone {kind!r}; choose one of {', '.join(TINY_BACKBONES)}.")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_backbone(config: GRAGConfig, *, path: str | None = None, adapters: bool = True):
    """(backbone model, tokenizer with the tag tokens) for ``config.backbone`` or a saved folder.

    With ``config.qlora`` the backbone is the 4-bit base with fresh LoRA adapters, or without
    any (``adapters=False``) for load_model to attach the trained ones.

    Real backbones resolve through modeling.llm.loading.resolve_model, which raises
    ModelNotFound with instructions when the model is not on this machine (never downloads).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if path is None and config.backbone.startswith("tiny:"):
        tokenizer = copy.deepcopy(load_tokenizer(config.tokenizer))  # never mutate the shared one
        tokenizer.padding_side = "right"
        if tokenizer.pad_token_id == tokenizer.eos_token_id and "<|endoftext|>" in tokenizer.get_vocab():
            # A padding_idx equal to eos would freeze eos's embedding in BART/T5.
            tokenizer.pad_token = "<|endoftext|>"
        add_tag_tokens(tokenizer)
        return _tiny_backbone(config.backbone, tokenizer), tokenizer
    device = resolve_device(config.device)
    if config.qlora and device.type != "cuda":
        raise ValueError("qlora needs a CUDA device (bitsandbytes 4-bit); set qlora=false on CPU.")
    # QLoRA quantises float weights as they load, so never from a GGUF file (see unquantised_source).
    source = (unquantised_source if config.qlora else resolve_model)(path or config.backbone)
    kwargs = source.from_pretrained_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    hf_config = AutoConfig.from_pretrained(source.path, **kwargs)
    auto = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
    if config.qlora:
        model = _load_qlora(config, auto, source.path, kwargs, tokenizer, device, hf_config, adapters=adapters)
    else:
        model = auto.from_pretrained(source.path, dtype=torch.float32, **kwargs)
        if add_tag_tokens(tokenizer) or model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    return model, tokenizer


def _load_qlora(config, auto, path, kwargs, tokenizer, device, hf_config, *, adapters: bool = True):
    """QLoRA (Dettmers et al. 2023; paper section 4.3.2): 4-bit NF4 base, bf16 compute, LoRA adapters.

    Needs CUDA and bitsandbytes: tests/modeling/test_grag_cuda.py checks it on a GPU host.
    """
    if hf_config.is_encoder_decoder:
        raise ValueError("qlora is implemented for decoder-only backbones; train BART/T5 in full precision.")
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = auto.from_pretrained(path, quantization_config=bnb, device_map={"": device.index or 0}, **kwargs)
    if add_tag_tokens(tokenizer) or model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if not adapters:
        return model
    tag_ids = tokenizer.convert_tokens_to_ids(["<user_persona>", "<agent_persona>", "<user>", AGENT])
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules="all-linear",
        task_type="CAUSAL_LM", trainable_token_indices={"embed_tokens": tag_ids},
    )
    return get_peft_model(model, lora)
