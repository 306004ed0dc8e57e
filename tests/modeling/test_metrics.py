"""Each metric of modeling/metrics/ against values worked out by hand (or independently)."""
import math

import pytest

from modeling import metrics as m

# --- Char-F1 (definition in char_f1_sample's docstring) ------------------------------------

def test_char_f1_docstring_example_and_case_and_whitespace():
    # "ab c" -> {a,b,c}; "abd" -> {a,b,d}; overlap 2; P = R = 2/3
    assert m.char_f1_sample("ab c", "abd") == pytest.approx(2 / 3)
    # case folded, whitespace ignored: identical bags
    assert m.char_f1_sample("He llo", "hello") == 1.0


def test_char_f1_counts_repeated_characters_as_a_multiset():
    # hyp "aaab" {a:3,b:1}, ref "ab" {a:1,b:1}: overlap 2, P = 2/4, R = 2/2, F1 = 2*.5*1/1.5 = 2/3
    assert m.char_f1_sample("aaab", "ab") == pytest.approx(2 / 3)
    # "Hello" vs "hello!": overlap 5, P = 1, R = 5/6, F1 = 10/11
    assert m.char_f1_sample("Hello", "hello!") == pytest.approx(10 / 11)


def test_char_f1_empty_and_disjoint_texts():
    assert m.char_f1_sample("", "  ") == 1.0
    assert m.char_f1_sample("", "abc") == 0.0
    assert m.char_f1_sample("xyz", "abc") == 0.0


def test_char_f1_run_is_the_mean_of_samples():
    scores = m.char_f1(["ab c", "Hello"], ["abd", "hello!"])
    assert scores.per_sample == pytest.approx([2 / 3, 10 / 11])
    assert scores.value == pytest.approx((2 / 3 + 10 / 11) / 2)


def test_metrics_refuse_lists_of_different_lengths():
    with pytest.raises(m.MetricInputError, match="2 hypotheses but 1 references"):
        m.char_f1(["a", "b"], ["a"])


# --- ROUGE ---------------------------------------------------------------------------------

def test_rouge_with_stemming_matches_hand_counts():
    hyps = ["a cat runs", "the cat sat on a mat"]
    refs = ["the cats are running", "the cat sat on the mat"]
    scores = m.rouge(hyps, refs)
    # Pair 1, stemmed: ref [the, cat, are, run], hyp [a, cat, run]: 2 unigrams in common
    # (cats->cat, running/runs->run only thanks to stemming): P 2/3, R 2/4 -> F 4/7.
    # No common bigram. LCS "cat run" = 2 -> 4/7.
    # Pair 2: ref [the cat sat on the mat], hyp [the cat sat on a mat]: unigrams 5/6 both ways;
    # bigrams (the cat, cat sat, sat on) 3 of 5 each way -> 0.6; LCS "the cat sat on mat" = 5 -> 5/6.
    assert scores["rouge1"].per_sample == pytest.approx([4 / 7, 5 / 6])
    assert scores["rouge2"].per_sample == pytest.approx([0.0, 0.6])
    assert scores["rougeL"].per_sample == pytest.approx([4 / 7, 5 / 6])
    assert scores["rouge2"].value == pytest.approx(0.3)
    assert scores["rouge1"].meta["stemmer"] is True


# --- BLEU ----------------------------------------------------------------------------------

def test_bleu_brevity_penalty_by_hand():
    # All n-gram precisions are 1; hyp 6 tokens, ref 7: BP = exp(1 - 7/6)
    scores = m.bleu(["the cat sat on the mat"], ["the cat sat on the mat today"])
    assert scores.value == pytest.approx(100 * math.exp(1 - 7 / 6), abs=1e-6)
    assert scores.per_sample == pytest.approx([100 * math.exp(1 - 7 / 6)], abs=1e-6)
    assert scores.meta["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert "eff:yes" in scores.meta["sentence_signature"]


def test_bleu_modified_precisions_by_hand():
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat": clipped precisions
    # 1-gram 5/6, 2-gram 3/5, 3-gram 2/4, 4-gram 1/3, equal lengths (BP 1):
    # BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** 0.25
    scores = m.bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert scores.value == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)


def test_bleu_is_corpus_bleu_not_a_mean_of_sentences():
    # Pooled: every n-gram matches; hyp lengths 6 + 4 = 10, ref 7 + 4 = 11: BP = exp(1 - 11/10)
    scores = m.bleu(["the cat sat on the mat", "a b c d"], ["the cat sat on the mat today", "a b c d"])
    assert scores.value == pytest.approx(100 * math.exp(-0.1), abs=1e-6)
    assert scores.per_sample == pytest.approx([100 * math.exp(1 - 7 / 6), 100.0], abs=1e-6)


# --- BPC -----------------------------------------------------------------------------------

def test_bpc_is_nats_to_bits_per_character():
    assert m.bpc(10 * math.log(2), 5) == pytest.approx(2.0)
    assert m.bpc(100.0, 50) == pytest.approx(100 / 0.6931471805599453 / 50)


def test_bpc_run_pools_bits_and_characters():
    scores = m.bpc_run([4 * math.log(2), 2 * math.log(2)], [2, 8])
    assert scores.per_sample == pytest.approx([2.0, 0.25])
    assert scores.value == pytest.approx(6 / 10)  # 6 bits over 10 characters, not the mean 1.125


def test_bpc_refuses_nonsense():
    with pytest.raises(m.MetricInputError, match="positive character count"):
        m.bpc(1.0, 0)
    with pytest.raises(m.MetricInputError, match="non-negative"):
        m.bpc(-1.0, 3)


# --- BERTScore -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_scorer():
    return m.bert_scorer_get(m.BertScoreConfig(model=m.BERTSCORE_MINILM))


def _bertscore_by_hand(hyp: str, ref: str) -> tuple[float, float, float]:
    """BERTScore (Zhang et al. 2020, eq. for R_BERT / P_BERT, no idf) recomputed with transformers and numpy.

    Token embeddings of layer 6 with [CLS]/[SEP]; each candidate token (not [CLS]/[SEP]) takes its
    best cosine similarity over all reference tokens, P is their mean; R the same the other way.
    """
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(m.minilm_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    def embed(text):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            states = model(**enc, output_hidden_states=True).hidden_states[6][0].numpy()
        states = states / np.linalg.norm(states, axis=1, keepdims=True)
        return states

    h, r = embed(hyp), embed(ref)
    sim = h @ r.T
    precision = sim[1:-1].max(axis=1).mean()
    recall = sim[:, 1:-1].max(axis=0).mean()
    return float(precision), float(recall), float(2 * precision * recall / (precision + recall))


@pytest.mark.slow
def test_bertscore_matches_an_independent_computation(minilm_scorer):
    hyps = ["i love hiking in the mountains with my dog", "that sounds great"]
    refs = ["my dog and i go hiking every weekend", "wow, that is wonderful news"]
    scores = m.bert_score(hyps, refs, scorer=minilm_scorer, batch_size=1)
    for i, (hyp, ref) in enumerate(zip(hyps, refs)):
        p, r, f = _bertscore_by_hand(hyp, ref)
        assert scores["bert_p"].per_sample[i] == pytest.approx(p, abs=1e-4)
        assert scores["bert_r"].per_sample[i] == pytest.approx(r, abs=1e-4)
        assert scores["bert_f1"].per_sample[i] == pytest.approx(f, abs=1e-4)
    assert scores["bert_f1"].value == pytest.approx(sum(scores["bert_f1"].per_sample) / 2)
    assert scores["bert_f1"].meta["num_layers"] == 6


@pytest.mark.slow
def test_bertscore_identical_texts_score_one_and_empty_texts_zero(minilm_scorer):
    # Every token's best match is itself (cosine 1), so P = R = F1 = 1; an empty side scores 0.
    p, r, f = minilm_scorer.score(["the weather is lovely today", "", "hello"], ["the weather is lovely today", "hi", ""])
    assert p[0] == pytest.approx(1.0, abs=1e-5) and r[0] == pytest.approx(1.0, abs=1e-5)
    assert f[0] == pytest.approx(1.0, abs=1e-5)
    assert (p[1], r[1], f[1], p[2], r[2], f[2]) == (0.0,) * 6


@pytest.mark.slow
def test_bertscore_scorer_is_built_once_per_config(minilm_scorer):
    assert m.bert_scorer_get(m.BertScoreConfig(model=m.BERTSCORE_MINILM)) is minilm_scorer


def test_bertscore_local_folder_needs_a_layer(tmp_path):
    with pytest.raises(m.MetricInputError, match="give the layer"):
        m.BertScore(m.BertScoreConfig(model=str(tmp_path)))
