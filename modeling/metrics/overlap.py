"""The text-overlap metrics of Table 3 (section 4.3.3): Char-F1, ROUGE-1/2/L and BLEU; no model needed."""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

from ..text import (
    CANONICALISATION,
    canonical_text,
    is_han_char,
    is_unspaced_char,
    is_word_char,
    words,
)
from .base import MetricScores, _canonical_pairs, _dropped_warning, _mean, empty_pair_score

# --- Char-F1 ---------------------------------------------------------------------------------

def _char_bag(text: str) -> Counter:
    return Counter(ch for ch in text.casefold() if not ch.isspace())


def char_f1_sample(hypothesis: str, reference: str) -> float:
    """Character-level overlap F1 of one hypothesis against its reference.

    Definition (the paper names the metric, section 4.3.3, without a formula): each text becomes
    a bag (multiset) of its characters after case folding, with all whitespace removed. The
    overlap is the size of the multiset intersection (each character counts min(times in the
    hypothesis, times in the reference)). Precision = overlap / characters of the hypothesis,
    recall = overlap / characters of the reference, F1 = 2PR / (P + R). Both texts are
    canonicalised first (canonical_text: NFC, so "café" typed decomposed equals "café"). Empty
    texts follow empty_pair_score (both empty 1.0, one empty 0.0); no overlap scores 0.0.

    Example: "ab c" vs "abd": bags {a,b,c} and {a,b,d}, overlap 2, P = R = 2/3, F1 = 2/3.
    """
    hypothesis, reference = canonical_text(hypothesis), canonical_text(reference)
    empty = empty_pair_score(hypothesis, reference)
    if empty is not None:
        return empty
    hyp, ref = _char_bag(hypothesis), _char_bag(reference)
    n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
    overlap = sum((hyp & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_hyp, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def char_f1(hypotheses: Sequence[str], references: Sequence[str]) -> MetricScores:
    """Char-F1 per sample (see char_f1_sample) and its mean over the run."""
    hypotheses, references = _canonical_pairs(hypotheses, references)
    values = [char_f1_sample(h, r) for h, r in zip(hypotheses, references)]
    return MetricScores(value=_mean(values), per_sample=values, meta={"canonical": CANONICALISATION})


# --- ROUGE -----------------------------------------------------------------------------------

class UnicodeRougeTokenizer:
    """rouge-score tokenizer (an object with ``tokenize``) that keeps every script's words.

    rouge-score's default tokenizer keeps only [a-z0-9] runs, so identical Chinese, Russian or
    Hindi texts score 0. This one takes modeling.text.words (runs of letters, combining marks
    and digits; each character of a script written without spaces, such as Chinese or Thai, is
    a word of its own, the usual character-level ROUGE for Chinese), case-folds them, and
    Porter-stems ASCII words longer than 3 characters as the default does, so English scores
    are unchanged. Punctuation, symbols and emoji are dropped, as in the original ROUGE.
    """

    name = "unicode-words"

    def __init__(self, use_stemmer: bool = True):
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = [w.casefold() for w in words(text)]
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(t) if len(t) > 3 and t.isascii() and t.isalnum() else t for t in tokens]
        return tokens


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeRougeTokenizer(use_stemmer=True))


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, Porter stemming), per sample and mean.

    Returns {"rouge1": ..., "rouge2": ..., "rougeL": ...}. Tokens come from
    UnicodeRougeTokenizer (words of every script; Chinese, Japanese, Thai by character).
    Empty texts follow empty_pair_score. A text of punctuation or emoji only has no tokens and
    scores 0; meta["warning"] says how many texts lost more than half their characters that way.
    """
    hypotheses, references = _canonical_pairs(hypotheses, references)
    scorer = _rouge_scorer()
    per: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for hyp, ref in zip(hypotheses, references):
        empty = empty_pair_score(hyp, ref)
        if empty is not None:
            for values in per.values():
                values.append(empty)
            continue
        scores = scorer.score(ref, hyp)  # rouge-score's order is (target, prediction)
        for key in per:
            per[key].append(scores[key].fmeasure)
    meta = {"package": "rouge-score", "stemmer": True, "measure": "fmeasure", "canonical": CANONICALISATION,
            "tokenizer": UnicodeRougeTokenizer.name,
            **_dropped_warning("ROUGE", UnicodeRougeTokenizer.name, hypotheses + references, words)}
    return {key: MetricScores(value=_mean(values), per_sample=values, meta=meta) for key, values in per.items()}


# --- BLEU ------------------------------------------------------------------------------------

def bleu_tokenizer(references: Sequence[str]) -> str:
    """sacrebleu's tokenizer for a run, chosen from the references so every system of a dataset shares it.

    "13a" (sacrebleu's default, the standard for English) unless a reference holds a character
    of a script written without spaces: Han -> "zh" (sacrebleu's Chinese tokenizer: one token per
    Han character, 13a for the rest); other unspaced scripts (kana only, Thai...) -> "char".
    13a splits on spaces and punctuation only, so it keeps Russian or Hindi words whole and an
    identical text scores 100 in any script; without a word segmenter, a whole Chinese sentence
    would be one "word".
    """
    unspaced = {ch for ref in references for ch in ref if is_unspaced_char(ch) and is_word_char(ch)}
    if any(is_han_char(ch) for ch in unspaced):
        return "zh"
    return "char" if unspaced else "13a"


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str | None = None) -> MetricScores:
    """sacrebleu corpus BLEU (0-100, Table 3's scale) and per-sample sentence BLEU.

    The corpus figure is not the mean of sentence BLEUs: it pools n-gram counts over the run
    (so a pair of empty texts adds nothing to it, and an empty hypothesis adds its reference's
    length to the brevity penalty). Sentence BLEU uses effective order (short sentences are not
    zeroed by missing 4-grams); a pair with an empty side follows empty_pair_score (both empty
    100, one empty 0). ``tokenize``: a sacrebleu tokenizer name, default bleu_tokenizer(references).
    meta["signature"] is sacrebleu's signature of the corpus figure, meta["sentence_signature"]
    that of the per-sample values; publish the signature with every BLEU number.
    """
    from sacrebleu.metrics import BLEU

    hypotheses, references = _canonical_pairs(hypotheses, references)
    tokenize = tokenize or bleu_tokenizer(references)
    corpus = BLEU(tokenize=tokenize)
    value = corpus.corpus_score(list(hypotheses), [list(references)]).score if hypotheses else 0.0
    sentence = BLEU(effective_order=True, tokenize=tokenize)
    per_sample = []
    for h, r in zip(hypotheses, references):
        score = sentence.sentence_score(h, [r]).score  # always scored: the signature needs one evaluation
        empty = empty_pair_score(h, r, best=100.0)
        per_sample.append(empty if empty is not None else score)
    return MetricScores(
        value=value, per_sample=per_sample,
        meta={"signature": str(corpus.get_signature()), "sentence_signature": str(sentence.get_signature()),
              "tokenizer": tokenize, "canonical": CANONICALISATION},
    )


# --- all of them -----------------------------------------------------------------------------

def text_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """Char-F1, ROUGE-1/2/L and BLEU in one call (the metrics that need no model)."""
    results = {"char_f1": char_f1(hypotheses, references)}
    results.update(rouge(hypotheses, references))
    results["bleu"] = bleu(hypotheses, references)
    return results
