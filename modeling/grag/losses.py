"""Losses of section 3.4-3.5: next-word prediction and contrastive JEPA."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import IGNORE_INDEX


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last non-padding token (rows are right-padded), (B, d)."""
    index = mask.long().sum(dim=1).clamp(min=1) - 1
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]


def cjepa_loss(context: torch.Tensor, personalised: torch.Tensor, generic: torch.Tensor) -> torch.Tensor:
    """C-JEPA (section 3.4, Eq. 1) on last-token embeddings E_C, E_P, E_G, averaged over the batch.

    Eq. 1 prints L = D_CG - D_CP = cos(E_C, E_P) - cos(E_C, E_G), but minimising that pulls the
    context towards the *generic* response, the opposite of the stated aim ("treating R_G as a
    negative target"; the context should move towards R_P and away from R_G). With
    D = 1 - cos, the stated intent is L = D_CP - D_CG = cos(E_C, E_G) - cos(E_C, E_P), which is
    what we minimise. It is still ~0 when R_P and R_G embed alike, as the paper notes.
    """
    cos_p = F.cosine_similarity(context.float(), personalised.float(), dim=-1)
    cos_g = F.cosine_similarity(context.float(), generic.float(), dim=-1)
    return (cos_g - cos_p).mean()


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood in nats (0 where labels are IGNORE_INDEX), shape of labels."""
    nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return nll.view(labels.shape)


def nwp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-level cross-entropy averaged over the non-ignored positions (section 3.5's NWP loss)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)
