"""Messy text through the real metrics (sacrebleu, rouge-score, bert-score on all-MiniLM-L6-v2).

Issue 16: the same sentence in NFC and NFD scored Char-F1 0.889 and BLEU 35; identical Chinese,
Russian and Hindi texts scored ROUGE 0. Every value here is worked out by hand.
"""
import unicodedata

import pytest

from modeling import metrics as m
from modeling.text import CANONICALISATION, canonical_text, is_empty

NFC = "Café crème brûlée à la carte, naïve résumé."
NFD = unicodedata.normalize("NFD", NFC)
NON_LATIN = {
    "zh": "今天天气很好，我们去公园散步吧。",
    "ru": "Сегодня хорошая погода, пойдём гулять в парк.",
    "hi": "आज मौसम अच्छा है, चलो पार्क में टहलने चलते हैं।",
    "ja": "今日はいい天気ですね。公園に行きましょう！",
    "th": "วันนี้อากาศดีมาก ไปเดินเล่นที่สวนกันเถอะ",
}
BLEU_TOKENIZER = {"zh": "zh", "ru": "13a", "hi": "13a", "ja": "zh", "th": "char"}


def test_canonical_text_is_nfc_with_whitespace_collapsed():
    assert NFC != NFD and canonical_text(NFD) == NFC
    assert canonical_text("  a\t\tb\n\u00a0c  ") == "a b c"
    assert canonical_text("x²") == "x²"  # NFC, not NFKC: a superscript keeps its meaning
    assert is_empty(" \n\t") and is_empty(None) and not is_empty("...")


def test_nfc_and_nfd_of_one_sentence_score_as_identical():
    scores = m.text_metrics([NFD], [NFC])
    assert scores["char_f1"].per_sample == [1.0]
    assert scores["bleu"].value == pytest.approx(100.0) and scores["bleu"].per_sample == [pytest.approx(100.0)]
    assert scores["rouge1"].value == scores["rouge2"].value == scores["rougeL"].value == 1.0
    assert m.char_f1_sample(NFD, NFC) == 1.0  # the per-pair function canonicalises too
    for name, result in scores.items():
        assert result.meta["canonical"] == CANONICALISATION, name


@pytest.mark.parametrize("lang", sorted(NON_LATIN))
def test_identical_non_latin_texts_score_the_maximum(lang):
    text = NON_LATIN[lang]
    scores = m.text_metrics([text], [text])
    for name in ("rouge1", "rouge2", "rougeL"):
        assert scores[name].per_sample == [1.0], name
    assert scores["bleu"].value == pytest.approx(100.0)
    assert scores["bleu"].meta["tokenizer"] == BLEU_TOKENIZER[lang]
    assert scores["char_f1"].value == 1.0
    assert "warning" not in scores["rouge1"].meta
    # Half the words differ: the score drops below 1 (the text is not one opaque token).
    half = text[: len(text) // 2]
    assert 0 < m.rouge([half], [text])["rouge1"].value < 1


def test_chinese_rouge_counts_characters_and_bleu_uses_the_chinese_tokenizer():
    # hyp 我喜欢猫 vs ref 我喜欢狗, one token per character: 3 of 4 unigrams shared -> ROUGE-1 3/4;
    # bigrams 我喜 喜欢 shared of 3 -> 2/3; LCS 我喜欢 = 3 -> 3/4.
    scores = m.rouge(["我喜欢猫"], ["我喜欢狗"])
    assert scores["rouge1"].value == pytest.approx(3 / 4)
    assert scores["rouge2"].value == pytest.approx(2 / 3)
    assert scores["rougeL"].value == pytest.approx(3 / 4)
    bleu = m.bleu(["我喜欢猫"], ["我喜欢狗"])
    assert bleu.meta["tokenizer"] == "zh" and "tok:zh" in bleu.meta["signature"]
    # zh: 4 tokens each; clipped precisions 3/4, 2/3, 1/2 and 0/1, which sacrebleu's default "exp"
    # smoothing makes 1/2: BLEU = 100 * (3/4 * 2/3 * 1/2 * 1/2) ** (1/4) = 100 * (1/8) ** 0.25.
    # (With 13a the whole sentence is one token and the score would be 0.)
    assert bleu.value == pytest.approx(100 * (1 / 8) ** 0.25)
    assert m.bleu(["我喜欢猫"], ["我喜欢狗"], tokenize="13a").value == pytest.approx(0.0)
    # English references keep sacrebleu's standard 13a.
    assert m.bleu(["a b"], ["a b"]).meta["tokenizer"] == "13a"


def test_russian_rouge_is_word_level_and_case_folded():
    # [сегодня хорошая погода] vs [сегодня плохая погода]: 2 of 3 unigrams, 0 bigrams, LCS 2.
    scores = m.rouge(["Сегодня хорошая погода!"], ["сегодня плохая погода"])
    assert scores["rouge1"].value == pytest.approx(2 / 3)
    assert scores["rouge2"].value == 0.0
    assert scores["rougeL"].value == pytest.approx(2 / 3)


def test_unicode_tokenizer_keeps_english_stemming():
    tokenizer = m.UnicodeRougeTokenizer()
    assert tokenizer.tokenize("The cats are Running, don't they?") == ["the", "cat", "are", "run", "don", "t", "they"]
    assert tokenizer.tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs stay inside the word


@pytest.mark.parametrize("hyp,ref,expected", [
    ("", "", 1.0), (" \n", "", 1.0), ("", "hello there", 0.0), ("hello there", "\t", 0.0),
])
def test_empty_versus_empty_is_one_rule_for_every_text_metric(hyp, ref, expected):
    scores = m.text_metrics([hyp], [ref])
    for name in ("char_f1", "rouge1", "rouge2", "rougeL"):
        assert scores[name].per_sample == [expected], name
    assert scores["bleu"].per_sample == [100 * expected]
    assert m.empty_pair_score(canonical_text(hyp), canonical_text(ref)) == expected


def test_rouge_warns_when_tokenising_drops_most_of_a_text():
    scores = m.rouge(["!!! ... ???", "I like tea 🙂", "🙂🙂🙂"], ["fine, thanks", "I like tea", "ok"])
    meta = scores["rouge1"].meta
    assert meta["texts_mostly_dropped"] == 2  # "!!! ... ???" and "🙂🙂🙂"; one emoji among words is not most
    assert "2 of 6 texts" in meta["warning"] and "'!!! ... ???'" in meta["warning"]
    assert scores["rouge1"].per_sample == [0.0, 1.0, 0.0]
    assert "warning" not in m.rouge(["I like tea"], ["I like tea"])["rouge1"].meta


@pytest.fixture(scope="module")
def minilm_scorer():
    return m.bert_scorer_get(m.BertScoreConfig(model=m.BERTSCORE_MINILM))


@pytest.mark.slow
def test_bertscore_counts_pairs_cut_at_the_models_maximum_length(minilm_scorer):
    # "the weather is lovely today" is 5 word pieces: 120 copies are 600 + 2 special tokens > 512.
    long = " ".join(["the weather is lovely today"] * 120)
    scores = m.bert_score([long, "hello there", NFD], ["the weather is lovely today", "hello there", NFC],
                          scorer=minilm_scorer)
    meta = scores["bert_f1"].meta
    assert meta["max_length"] == 512 and meta["truncated_pairs"] == 1
    assert "1 of 3 pairs" in meta["warning"] and meta["canonical"] == CANONICALISATION
    assert scores["bert_f1"].per_sample[1] == pytest.approx(1.0, abs=1e-5)
    assert scores["bert_f1"].per_sample[2] == pytest.approx(1.0, abs=1e-5)  # NFD == NFC after canonicalisation


@pytest.mark.slow
def test_bertscore_follows_the_empty_rule_and_flags_text_unknown_to_its_vocabulary(minilm_scorer):
    scores = m.bert_score(["", "", "hi", NON_LATIN["zh"]], [" ", "hi", "", NON_LATIN["zh"]], scorer=minilm_scorer)
    assert scores["bert_f1"].per_sample[:3] == [1.0, 0.0, 0.0]
    assert minilm_scorer.score(["\n ", " \t"], ["hi", "\u00a0"])[2] == [0.0, 1.0]  # whitespace only is empty
    assert scores["bert_p"].per_sample[:3] == [1.0, 0.0, 0.0]
    # MiniLM's English vocabulary knows few Chinese characters: most of the text is [UNK].
    assert scores["bert_f1"].meta["texts_mostly_unknown"] == 2
    assert "mostly tokens unknown" in scores["bert_f1"].meta["warning"]
    assert scores["bert_f1"].meta["truncated_pairs"] == 0


@pytest.mark.django_db
def test_metrics_job_summary_carries_the_warnings_and_each_stored_metric_its_canonicalisation(capsys):
    import json

    from django.core.management import call_command

    from modeling.metric_services import metrics_compute
    from modeling.models import MetricResult
    from tests.modeling.test_metrics_services import make_system

    system = make_system(pairs=[("!!! ???", "fine, thanks"), (NFD, NFC), ("", "")])
    report = metrics_compute(system=system, bert=False)
    assert len(report.warnings) == 1 and report.warnings[0].startswith("ROUGE: ") and "1 of 6 texts" in report.warnings[0]
    assert report.corpus["char_f1"] == pytest.approx((0.0 + 1.0 + 1.0) / 3)
    for row in MetricResult.objects.filter(system=system, sample__isnull=True):
        assert row.meta["canonical"] == CANONICALISATION, row.name
    call_command("compute_metrics", system.name, "--no-bert")
    assert json.loads(capsys.readouterr().out)["warnings"] == report.warnings


@pytest.mark.slow
def test_a_metrics_job_on_a_real_worker_shows_the_warnings_in_its_summary_and_log(celery_worker_process):
    from tests.conftest import wait_for
    from tests.modeling.test_metrics_services import make_system
    from worker.models import Job
    from worker.services import job_launch

    long = " ".join(["the weather is lovely today"] * 120)
    system = make_system(pairs=[("🙂🙂🙂", "ok, see you"), (long, "the weather is lovely today"), (NFD, NFC)])
    job = job_launch(kind=Job.Kind.METRICS, task="worker.metrics",
                     params={"system": system.name, "split": "test", "bert_model": "minilm"})
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).first(), timeout=240)
    assert job.status == "succeeded", job.error + job.traceback
    warnings = job.result["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["ROUGE", "BERTScore"]
    assert "1 of 6 texts" in warnings[0] and "1 of 3 pairs" in warnings[1]
    assert job.result["meta"]["bert_f1"]["truncated_pairs"] == 1
    for warning in warnings:
        assert f"warning: {warning}" in job.log_tail


def test_english_rouge_tokens_are_rouge_scores_own_on_real_spc_text():
    """The Unicode tokenizer changes nothing for English: the same tokens as rouge-score's default."""
    import csv

    from rouge_score.tokenizers import DefaultTokenizer

    from tests.conftest import shared_file

    ours, theirs = m.UnicodeRougeTokenizer(use_stemmer=True), DefaultTokenizer(use_stemmer=True)
    checked = 0
    with open(shared_file("spc/Synthetic-Persona-Chat_test.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for line in row["Best Generated Conversation"].splitlines()[:20]:
                text = line.split(":", 1)[-1]
                assert ours.tokenize(text) == theirs.tokenize(text), text
                checked += 1
            if checked >= 2000:
                break
    assert checked >= 2000


@pytest.mark.django_db
def test_an_empty_reference_gets_no_bpc_instead_of_failing_the_run():
    import math

    from modeling.metric_services import metrics_compute
    from modeling.models import MetricResult
    from tests.modeling.test_metrics_services import make_system

    # Sample 1: 28-character reference, 56 bits -> 2 bits/char. Sample 2: empty reference (an NLL of its eos only).
    system = make_system(pairs=[("the cat sat on the mat", "the cat sat on the mat today"), ("", "")],
                         nll=[56 * math.log(2), 0.5])
    report = metrics_compute(system=system, bert=False)
    bpc = MetricResult.objects.get(system=system, sample__isnull=True, name="bpc")
    assert bpc.value == pytest.approx(2.0) and bpc.meta["empty_references"] == 1
    assert MetricResult.objects.filter(system=system, name="bpc", sample__isnull=False).count() == 1
    assert report.corpus["char_f1"] == pytest.approx((2 * 17 / (17 + 22) + 1.0) / 2)  # empty vs empty: 1
