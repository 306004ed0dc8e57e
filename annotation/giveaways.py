"""Find responses whose text gives their author away, before annotators see them.

Blinding (paper section 5.5, issue 10) fails quietly when a response names its own model ("I am
Qwen"), speaks as an AI ("As an AI language model, ..."), carries a run's or system's name, or
keeps a prompt tag ("<agent>", "<|im_start|>") that only one system's generation leaves behind:
an annotator who notices it knows which system wrote the response and rates the system, not the
text. Staff run this on a study before it opens and fix or drop the flagged items.

Degenerate responses (empty, whitespace-only, punctuation-only, a repetition loop, a reply cut
mid-sentence, one unbroken very long word) are listed too, per system: they are kept in the
study (real systems produce them, and rating them is part of the evaluation) but staff should
see them before the study opens. ``text_degenerate`` is ``modeling.text.response_defects``: the same loop detector
as generation's flags, so a study and a generation job call the same text a loop.

``text_giveaways`` checks one text; ``study_giveaways`` (a selector) checks every item of a study
and returns plain rows, ready for the ``check_study`` command, the API or the staff page;
``study_checks`` returns the same as Django system-check messages; ``giveaway_checks`` can be
registered as a ``database``-tagged system check (``manage.py check --database default``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.core import checks

from .models import Item, Study

# Unambiguous in any dialogue: brand and model-family names nobody's persona uses otherwise.
# Case-sensitive where the word has a common meaning in another case (a llama, the mistral);
# names that are also ordinary words in chit-chat (Gemini the sign, a vicuna, the Bard) are left out.
_MODEL_NAMES = re.compile(
    r"\b(?:Qwen\w*|ChatGPT|GPT-?[2345](?:\.\d)?(?:-?turbo|o)?|OpenAI|Anthropic|SmolLM\w*|DeepSeek\w*|Mixtral\w*|"
    r"LLaMA\w*|Llama[- ]?[1-4](?:\.\d)?|Hugging ?Face\w*|Claude[- ]?[1-4]|Phi-[1-4]\w*|"
    r"Falcon-\d+\w*|BlenderBot|DialoGPT|flan-t5\w*|bart-(?:base|large)\w*)\b",
)
# Speaking as an AI, or naming oneself as a model or an assistant.
_SELF_REFERENCE = re.compile(
    r"\b(?:as an? (?:AI|artificial intelligence|(?:large )?language model|LLM|chatbot|AI assistant|virtual assistant)\b"
    r"|(?:I am|I'm|I’m|i am|im|my name is|call me|this is)\s+(?:just\s+|only\s+)?(?:an?\s+)?"
    r"(?:AI\b|artificial intelligence|(?:large )?language model|LLM\b|chat ?bot|AI assistant|virtual assistant|"
    r"digital assistant|Claude\b|Gemma\b|Mistral\b|Phi\b|Falcon\b|Alexa\b|Siri\b|Qwen)"
    r"|(?:created|developed|trained|made|built|designed) by (?:OpenAI|Anthropic|Google|Meta|Alibaba|Microsoft|"
    r"Mistral AI|Hugging ?Face|DeepMind)"
    r"|I (?:do not|don't|don’t|cannot|can't|can’t) have (?:personal )?(?:experiences|feelings|a body|emotions|opinions)"
    r"|\b(?:language model|AI model|AI assistant)\b)",
    re.IGNORECASE,
)
# Prompt and special tokens that one system's decoding or post-processing leaves in its text.
_PROMPT_TAGS = re.compile(
    r"</?(?:agent|user|agent_persona|user_persona|persona|history|generic|response|s|pad|unk|eos|bos|mask)>"
    r"|<\|[^|<>\s]{1,40}\|>|\[/?INST\]|<<SYS>>|^\s*(?:###\s*)?(?:Assistant|Agent|Response|System)\s*:",
    re.IGNORECASE | re.MULTILINE,
)

RULES = {
    "model_name": "names a model family or vendor",
    "self_reference": "speaks as an AI or names itself",
    "prompt_tag": "keeps a prompt tag or special token",
    "system_name": "contains the name or model id of a compared system",
}


# Degenerate responses: one definition, shared with generation's flags (modeling/text.py).
from modeling.text import response_defects as text_degenerate  # noqa: E402


@dataclass(frozen=True)
class Giveaway:
    """One reason a text gives its author away: the rule, the words that matched, some context."""

    rule: str
    match: str
    excerpt: str


def _excerpt(text: str, start: int, end: int, width: int = 40) -> str:
    left, right = max(0, start - width), min(len(text), end + width)
    return ("…" if left else "") + text[left:right].replace("\n", " ") + ("…" if right < len(text) else "")


def _name_variants(names: Iterable[str]) -> list[str]:
    """The names to look for: each name, and a model id's last path part (``org/model`` -> ``model``)."""
    out: set[str] = set()
    for name in names:
        name = (name or "").strip()
        if len(name) < 4:  # "ICL", "T5": too short to search for without false alarms
            continue
        out.add(name)
        tail = name.rstrip("/").rsplit("/", 1)[-1]
        if len(tail) >= 4:
            out.add(tail)
    return sorted(out, key=len, reverse=True)


def text_giveaways(text: str, *, names: Iterable[str] = ()) -> list[Giveaway]:
    """Every way ``text`` gives its author away; ``names`` are system, run and model names to look for."""
    found: list[Giveaway] = []
    seen: set[tuple[str, str]] = set()

    def add(rule: str, m_start: int, m_end: int) -> None:
        match = text[m_start:m_end]
        if (rule, match.lower()) not in seen:
            seen.add((rule, match.lower()))
            found.append(Giveaway(rule=rule, match=match.strip(), excerpt=_excerpt(text, m_start, m_end)))

    for rule, pattern in (("self_reference", _SELF_REFERENCE), ("model_name", _MODEL_NAMES), ("prompt_tag", _PROMPT_TAGS)):
        for m in pattern.finditer(text):
            add(rule, m.start(), m.end())
    for name in _name_variants(names):
        # Whole-word, case-insensitive: "PostGRAG" in "postgrag's" yes, "Hist" in "history" no.
        for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
            add("system_name", m.start(), m.end())
    return found


def study_system_names(*, study) -> list[str]:
    """Names an annotator must never see for this study: both systems' names, model ids and run folders."""
    names = [study.baseline_name, study.challenger_name]
    for system in (study.baseline_system, study.challenger_system):
        if system is not None:
            names += [system.name, system.backbone, system.checkpoint_dir.rstrip("/").rsplit("/", 1)[-1]]
    return [n for n in names if n]


def study_giveaways(*, study) -> list[dict[str, Any]]:
    """Flag every item response (and study text annotators read) that gives its author away.

    Returns one row per flagged text: ``item`` (the item key, for staff), ``side`` ("baseline",
    "challenger", "generic_response" or a study field), ``system``, ``rule``, ``match``, ``excerpt``.
    """
    names = study_system_names(study=study)
    rows: list[dict[str, Any]] = []
    # What annotators read besides the items: docs/annotation.md tells staff never to put system names here.
    study_texts = {"slug": study.slug, "title": study.title, "instructions": study.instructions}
    study_texts.update({f"question {q.key}": f"{q.label}\n{q.text}" for q in study.questions.all()})
    for field, text in study_texts.items():
        for g in text_giveaways(text or "", names=names):
            if g.rule == "system_name":
                rows.append({"item": None, "side": field, "system": None, **asdict(g)})
    items = study.items.order_by("key").values_list("key", "baseline_response", "challenger_response", "generic_response")
    for key, baseline, challenger, generic in items:
        for side, system, text in (
            ("baseline", study.baseline_name, baseline),
            ("challenger", study.challenger_name, challenger),
            # The generic response comes from yet another model; it must not name either system.
            ("generic_response", None, generic),
        ):
            for g in text_giveaways(text or "", names=names):
                rows.append({"item": key, "side": side, "system": system, **asdict(g)})
    return rows


def study_degenerate(*, study) -> list[dict[str, Any]]:
    """Every degenerate response of a study's compared systems: rows of ``item``, ``side``
    ("baseline" / "challenger"), ``system``, ``kind`` (a ``DEGENERATE`` key) and ``excerpt``.

    Only the items annotators rate (normal and gold): trap items copy their texts."""
    rows: list[dict[str, Any]] = []
    items = study.items.filter(kind__in=[Item.Kind.NORMAL, Item.Kind.GOLD]).order_by("key")
    for key, baseline, challenger in items.values_list("key", "baseline_response", "challenger_response"):
        for side, system, text in (("baseline", study.baseline_name, baseline), ("challenger", study.challenger_name, challenger)):
            for kind in text_degenerate(text or ""):
                excerpt = text if len(text) <= 80 else text[:60] + "…" + text[-19:]
                rows.append({"item": key, "side": side, "system": system, "kind": kind, "excerpt": excerpt})
    return rows


def study_degenerate_report(*, study) -> dict[str, Any]:
    """Degenerate responses per system: ``{"by_system": {system: {kind: n}}, "flags": rows}``.

    Every compared system is listed, with zero counts when its responses are all ordinary."""
    rows = study_degenerate(study=study)
    by_system: dict[str, dict[str, int]] = {study.baseline_name: {}, study.challenger_name: {}}
    for r in rows:
        by_system[r["system"]][r["kind"]] = by_system[r["system"]].get(r["kind"], 0) + 1
    return {"by_system": by_system, "flags": rows}


def gives_author_away(row: dict[str, Any]) -> bool:
    """Whether a ``study_giveaways`` row can tell an annotator which side is which (blinding, paper 5.5).

    The one rule for the study's creation check (``study_check_flagged``) and the staff page
    (``study_giveaway_report``): a flagged baseline or challenger response, or a study text that
    names a system, unblinds. A flagged generic response does not: it is shown beside A and B
    alike, identical on both sides, so it names no side (it is still listed for staff)."""
    return row["side"] != "generic_response"


def study_check_flagged(*, study) -> dict[str, int]:
    """How many giveaway and degenerate flags a study has: what keeps a generated study closed."""
    sided = [r for r in study_giveaways(study=study) if gives_author_away(r)]
    return {"giveaways": len(sided), "degenerate": len(study_degenerate(study=study))}


def study_giveaway_report(*, study) -> dict[str, Any]:
    """A summary for staff: how many items are flagged, counts per rule and side, and the rows;
    ``degenerate`` holds ``study_degenerate_report``.

    ``flags`` lists every flagged text; ``unblinding`` the ones that give the author away
    (``gives_author_away``: what keeps a study closed) and ``unblinding_items`` their item count;
    ``generic`` the flagged generic responses, listed but harmless to blinding."""
    rows = study_giveaways(study=study)
    unblinding = [r for r in rows if gives_author_away(r)]
    by_rule: dict[str, int] = {}
    by_side: dict[str, int] = {}
    for r in rows:
        by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + 1
        by_side[r["side"]] = by_side.get(r["side"], 0) + 1
    flagged_items = sorted({r["item"] for r in rows if r["item"] is not None})
    return {
        "study": study.slug, "items": study.items.count(), "flagged_items": len(flagged_items),
        "by_rule": by_rule, "by_side": by_side, "flags": rows, "degenerate": study_degenerate_report(study=study),
        "unblinding": unblinding, "unblinding_items": len({r["item"] for r in unblinding if r["item"] is not None}),
        "generic": [r for r in rows if not gives_author_away(r)],
    }


def study_checks(*, study) -> list[checks.CheckMessage]:
    """The flags as Django system-check warnings (``annotation.W101``..), one per flagged text."""
    ids = {"self_reference": "W101", "model_name": "W102", "system_name": "W103", "prompt_tag": "W104"}
    out = []
    for r in study_giveaways(study=study):
        where = f"item {r['item']!r} ({r['side']})" if r["item"] else f"study {r['side']}"
        out.append(
            checks.Warning(
                f"study {study.slug!r}, {where} {RULES[r['rule']]}: {r['match']!r} in {r['excerpt']!r}",
                hint="Fix or drop the item before the study opens (blinding, paper section 5.5).",
                obj=study,
                id=f"annotation.{ids[r['rule']]}",
            )
        )
    return out


def giveaway_checks(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """System check over open studies; register with the ``database`` tag so it runs only with --database."""
    if not databases:
        return []
    from django.db import DatabaseError, connection

    out: list[checks.CheckMessage] = []
    # `migrate` runs database checks before it creates the tables: skip them then, rather than
    # query a missing table (which PostgreSQL logs as an ERROR on every fresh migrate).
    if Study._meta.db_table not in connection.introspection.table_names():
        return []
    try:
        for study in Study.objects.filter(is_open=True).select_related("baseline_system", "challenger_system"):
            out += study_checks(study=study)
    except DatabaseError:  # `migrate` runs database checks before the tables exist
        return []
    return out
