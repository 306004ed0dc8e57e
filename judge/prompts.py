"""Judge prompts as versioned data (FastChat ``llm_judge`` / ParlAI ACUTE-Eval style).

The judge sees exactly what an annotator sees in the paper's human evaluation (section 5.5):
the persona, the conversation history, the generic response, "Response A" and "Response B"
and one of the four questions of Table 5, and answers with one letter. It never sees system
names. The text shared by all questions and both orders (instructions, persona, history,
generic response) comes first, so that its key/value cache is computed once per item
(``judge.scoring``); the responses and the question come last.

Plain Python: no Django, no torch. A changed wording is a new version, never an edit of an old
one, because the version is stored with each run and its ratings.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The letters the judge answers with; "S" is the paper's "Similar".
OPTIONS = ("A", "B", "S")


@dataclass(frozen=True)
class PromptTemplate:
    """One version of the judge prompt; ``{...}`` fields are filled by ``prompt_messages``."""

    version: str
    system: str  # the judge's role and the answer format
    context: str  # persona and history: shared by every question and both orders
    generic: str  # the generic response panel, left out when the item has none (like the annotator page)
    comparison: str  # the two responses and the question: what differs between prompts
    user_label: str = "User"  # speaker names in the history, as the annotator page shows them
    agent_label: str = "Agent"
    # When set, every question of the study is listed in the shared context ("{questions}", one
    # numbered line each, as the annotator page shows them all at once) and ``comparison`` only
    # names the one to answer ("{number}"): the per-prompt part shrinks to a few tokens.
    questions: str = ""

    def as_text(self) -> str:
        """The whole template, stored with a run (JudgeRun.prompt_text) for audit."""
        return json.dumps(
            {"version": self.version, "system": self.system, "context": self.context, "generic": self.generic,
             "comparison": self.comparison, "user_label": self.user_label, "agent_label": self.agent_label,
             "questions": self.questions},
            indent=2, ensure_ascii=False,
        )


PROMPT_V1 = PromptTemplate(
    version="v1",
    system=(
        "You are an impartial judge of a personalised dialogue agent. You compare two candidate "
        "responses that the agent could give at the same point of a conversation, and answer one "
        "question about them. Do not let the order of the responses, their length or their style "
        "influence you beyond what the question asks. Answer with a single letter and nothing else: "
        "A if Response A is better, B if Response B is better, S if they are similar."
    ),
    context="[Persona of the agent]\n{persona}\n\n[Conversation history]\n{history}\n\n",
    generic="[Generic response (written without the persona)]\n{generic_response}\n\n",
    comparison=(
        "[Response A]\n{response_a}\n\n[Response B]\n{response_b}\n\n[Question]\n{question}\n\n"
        "Answer with a single letter: A (Response A is better), B (Response B is better) or S (similar)."
    ),
)

# v2: the same content and answer format, laid out for speed. The four questions are listed
# once in the context shared by all eight prompts of an item (annotators, too, see them all on
# one page), so each prompt ends with a short "answer question N" after the two responses
# instead of the question and the answer instructions again: about 40 % fewer tokens per item.
PROMPT_V2 = PromptTemplate(
    version="v2",
    system=(
        "You are an impartial judge of a personalised dialogue agent. You compare two candidate "
        "responses that the agent could give at the same point of a conversation, and answer questions "
        "about them, one at a time. Do not let the order of the responses, their length or their style "
        "influence you beyond what the question asks. Answer with a single letter and nothing else: "
        "A if Response A is better, B if Response B is better, S if they are similar."
    ),
    context=PROMPT_V1.context,
    generic=PROMPT_V1.generic,
    questions="[Questions]\n{questions}\n\n",
    comparison=(
        "[Response A]\n{response_a}\n\n[Response B]\n{response_b}\n\n"
        "Answer question {number} with a single letter: A, B or S."
    ),
)

PROMPTS: dict[str, PromptTemplate] = {t.version: t for t in (PROMPT_V1, PROMPT_V2)}
DEFAULT_PROMPT_VERSION = PROMPT_V2.version


class UnknownPromptVersion(KeyError):
    """The requested prompt version does not exist; the message lists the known ones."""

    def __str__(self) -> str:
        return self.args[0]


def prompt_template(version: str) -> PromptTemplate:
    try:
        return PROMPTS[version]
    except KeyError:
        raise UnknownPromptVersion(
            f"Unknown judge prompt version {version!r}; known versions: {', '.join(sorted(PROMPTS))}."
        ) from None


def history_text(history: Sequence[Mapping[str, str]], *, template: PromptTemplate = PROMPT_V1) -> str:
    """One line per turn, ``User: ...`` / ``Agent: ...`` (Item.history uses roles user/agent)."""
    lines = []
    for turn in history:
        label = template.agent_label if turn.get("role") == "agent" else template.user_label
        lines.append(f"{label}: {str(turn.get('text', '')).strip()}")
    return "\n".join(lines) if lines else "(the conversation starts here)"


def prompt_messages(
    *,
    template: PromptTemplate,
    persona: str,
    history: Sequence[Mapping[str, str]],
    generic_response: str,
    response_a: str,
    response_b: str,
    question: str,
    all_questions: Sequence[str] = (),
) -> list[dict[str, str]]:
    """The chat messages of one judgement (system + user); the model's chat template adds the rest.

    ``question`` is the one to answer; a template with a ``questions`` block also needs
    ``all_questions`` (the study's questions in order, ``question`` among them).
    """
    user = template.context.format(persona=persona.strip() or "(none)", history=history_text(history, template=template))
    if generic_response.strip():
        user += template.generic.format(generic_response=generic_response.strip())
    number = 0
    if template.questions:
        texts = [q.strip() for q in all_questions]
        if question.strip() not in texts:
            raise ValueError(f"prompt {template.version} lists the study's questions: pass all_questions with {question!r} among them")
        number = texts.index(question.strip()) + 1
        user += template.questions.format(questions="\n".join(f"{i}. {q}" for i, q in enumerate(texts, 1)))
    user += template.comparison.format(
        response_a=response_a.strip(), response_b=response_b.strip(), question=question.strip(), number=number
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def responses_in_order(*, baseline: str, challenger: str, baseline_side: str) -> tuple[str, str]:
    """(Response A, Response B) for the order in which the baseline is shown on ``baseline_side``."""
    if baseline_side == "A":
        return baseline, challenger
    if baseline_side == "B":
        return challenger, baseline
    raise ValueError(f"baseline_side must be 'A' or 'B', not {baseline_side!r}")


def prompt_hash(messages: Sequence[Mapping[str, str]]) -> str:
    """A short fingerprint of a prompt, stored with each verdict to audit what the judge saw."""
    return hashlib.sha256(json.dumps(list(messages), sort_keys=True).encode()).hexdigest()[:16]
