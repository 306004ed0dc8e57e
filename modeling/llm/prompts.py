"""Prompt templates for generic-response augmentation and the ICL baselines, as versioned data.

Section 3.1 and Appendix A: the system prompt describes the task and the dataset's chat scenario
and goals, with rules asking for a neutral style and emotional tone; the user prompt holds the
history H with the last <user> utterance set apart; the persona P is withheld. The paper shows
the SPC prompts (Figures 5, 6) and builds the other datasets' "similarly but with different
'Chat Scenario and Goals' descriptions": so one scenario per dataset here.

Section 4.2.1: ICL(Hist) prompts with persona + history, ICL(TST) with persona + generic
response and an instruction to rewrite it in the persona's voice; n-shot examples come first.

A changed wording is a new version, never an edit of an old one: the version is stored with
every generated response (Sample.generic_prompt_version, System.config) and keys the LLMCache.
Plain Python, no Django.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

USER_TAG = "<user>"
AGENT_TAG = "<agent>"

# The "Chat Scenario and Goals" of each dataset (Appendix A).
SCENARIOS: dict[str, str] = {
    "spc": (
        "Two people who have just met are chatting casually to get to know each other. They talk about "
        "their daily lives, hobbies, work, families and plans. The goal of the conversation is to keep a "
        "friendly, engaging exchange going by responding to what the other person said and asking or "
        "sharing in turn."
    ),
    "convai2": (
        "Two crowd workers who have never met are chatting to get to know each other. They talk about "
        "themselves, their interests and their everyday lives. The goal of the conversation is to keep a "
        "natural, friendly exchange going by responding to what the other person said."
    ),
    "pfg": (
        "An online conversation between a persuader and a persuadee. The persuader (the agent) tries to "
        "convince the persuadee (the user) to donate some or all of their task payment to the charity "
        "Save the Children, which helps children in need around the world with education, health and "
        "emergency relief. The goal of the conversation is to inform the user about the charity, answer "
        "their questions and persuade them to donate."
    ),
    "ed": (
        "A conversation between two people in which the user talks about a personal situation that made "
        "them feel a certain emotion, and the listener (the agent) responds. The goal of the conversation "
        "is to acknowledge what the user said and respond with understanding."
    ),
    "jsonl": (
        "A conversation between a user and an agent. The goal of the conversation is to respond helpfully "
        "and naturally to what the user said."
    ),
}


@dataclass(frozen=True)
class AugmentTemplate:
    """One version of the generic-response prompt (Figure 5) for one dataset."""

    version: str  # stored with each R_G, e.g. "spc-v1"
    scenario: str
    system: str  # {scenario} is filled in
    user: str  # {history} and {last_user} are filled in

    def messages(self, *, history: Sequence[dict]) -> list[dict]:
        """The chat prompt for the agent turn after ``history`` (which ends with a user turn)."""
        earlier, last_user = split_history(history)
        return [
            {"role": "system", "content": self.system.format(scenario=self.scenario)},
            {"role": "user", "content": self.user.format(
                history=format_history(earlier) or "(the conversation starts here)", last_user=last_user)},
        ]


AUGMENT_SYSTEM_V1 = (
    "You are a generic conversational agent. Your task is to write the agent's next response in a "
    "conversation between a user and an agent.\n\n"
    "Chat Scenario and Goals:\n{scenario}\n\n"
    "Rules:\n"
    "1. Write only the agent's next response: one short turn of one to three sentences.\n"
    "2. Use a neutral style and a neutral emotional tone: no strong opinions, no slang, no emojis, no "
    "exaggerated enthusiasm or sympathy.\n"
    "3. Do not invent personal details about the agent (name, age, job, family, hobbies, likes) unless "
    "they were already stated in the conversation.\n"
    "4. Respond to the last user utterance and stay consistent with the conversation history.\n"
    "5. Do not write role names, tags, quotes, explanations or alternatives."
)
AUGMENT_USER_V1 = (
    "Conversation history:\n{history}\n\n"
    "Last user utterance:\n" + USER_TAG + " {last_user}\n\n"
    "Write the agent's next response."
)

AUGMENT_TEMPLATES: dict[str, AugmentTemplate] = {
    f"{kind}-v1": AugmentTemplate(version=f"{kind}-v1", scenario=scenario, system=AUGMENT_SYSTEM_V1,
                                  user=AUGMENT_USER_V1)
    for kind, scenario in SCENARIOS.items()
}


@dataclass(frozen=True)
class ICLExample:
    """One solved demonstration from the training split."""

    persona: str
    history: Sequence[dict]
    generic_response: str
    response: str


@dataclass(frozen=True)
class ICLTemplate:
    """One version of a few-shot ICL prompt (Figure 6) for one dataset and paradigm."""

    version: str  # e.g. "icl_hist-spc-v1"
    method: str  # "icl_hist" or "icl_tst"
    scenario: str
    system: str  # {scenario}
    example: str  # one demonstration: {persona} {history} {last_user} {generic_response} {response}
    query: str  # the same fields without {response}

    def messages(self, *, persona: str, history: Sequence[dict], generic_response: str = "",
                 examples: Sequence[ICLExample] = ()) -> list[dict]:
        parts = []
        for number, ex in enumerate(examples, 1):
            earlier, last_user = split_history(ex.history)
            parts.append(f"Example {number}:\n" + self.example.format(
                persona=ex.persona.strip() or "(none)", history=format_history(earlier) or "(none)",
                last_user=last_user, generic_response=ex.generic_response, response=ex.response))
        earlier, last_user = split_history(history)
        parts.append(("Now your turn:\n" if examples else "") + self.query.format(
            persona=persona.strip() or "(none)", history=format_history(earlier) or "(none)",
            last_user=last_user, generic_response=generic_response))
        return [
            {"role": "system", "content": self.system.format(scenario=self.scenario)},
            {"role": "user", "content": "\n\n".join(parts)},
        ]


ICL_HIST_SYSTEM_V1 = (
    "You are a personalised conversational agent with the persona given below. Your task is to write "
    "the agent's next response in a conversation between a user and an agent.\n\n"
    "Chat Scenario and Goals:\n{scenario}\n\n"
    "Rules:\n"
    "1. Write only the agent's next response, one turn, in the voice of the persona.\n"
    "2. Respond to the last user utterance and stay consistent with the history and the persona.\n"
    "3. Do not write role names, tags, quotes or explanations."
)
ICL_HIST_EXAMPLE_V1 = (
    "Persona:\n{persona}\nConversation history:\n{history}\nLast user utterance:\n" + USER_TAG
    + " {last_user}\nResponse:\n" + AGENT_TAG + " {response}"
)
ICL_HIST_QUERY_V1 = (
    "Persona:\n{persona}\nConversation history:\n{history}\nLast user utterance:\n" + USER_TAG
    + " {last_user}\nResponse:"
)
ICL_TST_SYSTEM_V1 = (
    "You are a personalised conversational agent with the persona given below. You are given a generic "
    "response that a neutral agent wrote; your task is to rewrite it in the voice of the persona, keeping "
    "its meaning.\n\n"
    "Chat Scenario and Goals:\n{scenario}\n\n"
    "Rules:\n"
    "1. Write only the rewritten response, one turn.\n"
    "2. Keep what the generic response says, and add the persona's style and details where they fit.\n"
    "3. Do not write role names, tags, quotes or explanations."
)
ICL_TST_EXAMPLE_V1 = (
    "Persona:\n{persona}\nGeneric response:\n{generic_response}\nRewritten response:\n" + AGENT_TAG + " {response}"
)
ICL_TST_QUERY_V1 = "Persona:\n{persona}\nGeneric response:\n{generic_response}\nRewritten response:"

ICL_TEMPLATES: dict[str, ICLTemplate] = {}
for _kind, _scenario in SCENARIOS.items():
    for _method, _system, _example, _query in (
        ("icl_hist", ICL_HIST_SYSTEM_V1, ICL_HIST_EXAMPLE_V1, ICL_HIST_QUERY_V1),
        ("icl_tst", ICL_TST_SYSTEM_V1, ICL_TST_EXAMPLE_V1, ICL_TST_QUERY_V1),
    ):
        _version = f"{_method}-{_kind}-v1"
        ICL_TEMPLATES[_version] = ICLTemplate(version=_version, method=_method, scenario=_scenario,
                                              system=_system, example=_example, query=_query)


class UnknownPromptVersion(KeyError):
    """No template of that version; the message lists the known ones."""

    def __str__(self) -> str:
        return self.args[0]


def augment_template(kind: str, version: str | None = None) -> AugmentTemplate:
    """The generic-response template for a dataset kind (latest version unless one is named)."""
    version = version or f"{kind if kind in SCENARIOS else 'jsonl'}-v1"
    try:
        return AUGMENT_TEMPLATES[version]
    except KeyError:
        raise UnknownPromptVersion(
            f"Unknown augmentation prompt version {version!r}; known: {', '.join(sorted(AUGMENT_TEMPLATES))}."
        ) from None


def icl_template(method: str, kind: str, version: str | None = None) -> ICLTemplate:
    if method not in ("icl_hist", "icl_tst"):
        raise UnknownPromptVersion(f"Unknown ICL method {method!r}; choose icl_hist or icl_tst.")
    version = version or f"{method}-{kind if kind in SCENARIOS else 'jsonl'}-v1"
    try:
        return ICL_TEMPLATES[version]
    except KeyError:
        raise UnknownPromptVersion(
            f"Unknown ICL prompt version {version!r}; known: {', '.join(sorted(ICL_TEMPLATES))}."
        ) from None


def format_history(turns: Sequence[dict]) -> str:
    """One line per turn, tagged <user>/<agent> as in the paper's prompts."""
    return "\n".join(f"{USER_TAG if t['role'] == 'user' else AGENT_TAG} {t['text'].strip()}" for t in turns)


def split_history(history: Sequence[dict]) -> tuple[list[dict], str]:
    """(earlier turns, last user utterance): section 3.1 sets the last <user> utterance apart."""
    turns = list(history)
    if not turns or turns[-1].get("role") != "user":
        raise ValueError("a sample's history must end with a user turn")
    return turns[:-1], turns[-1]["text"].strip()
