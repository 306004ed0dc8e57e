"""Option tokens and the answer position on SmolLM2's real tokenizer under three real chat templates.

Each template is written into a tokenizer_config.json in a temporary folder and loaded with
AutoTokenizer, as a downloaded model's would be. The vocabulary is SmolLM2's (the only one
offline); what differs is the template's assistant preamble: SmolLM2's and Qwen2.5's end with
"<|im_start|>assistant\\n", Llama-3's with "<|end_header_id|>\\n\\n", which this GPT-2 style
tokenizer splits as one "\\n\\n" token at the end of a text but as two "\\n" tokens once the
answer letter follows.
"""
import json
import os

import pytest

from judge.prompts import OPTIONS, PROMPT_V2, prompt_messages
from judge.scoring import OPTION_SPELLINGS, encode_messages, option_token_ids

# Meta-Llama-3-8B-Instruct's chat template (tokenizer_config.json, "chat_template").
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Qwen2.5-Instruct's chat template, its branch for conversations without tools.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == "
    "\"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}{{- '<|im_start|>' "
    "+ message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from modeling.llm.loading import load_tokenizer

    return load_tokenizer("smollm2")


def _with_template(tokenizer, template: str, folder):
    """SmolLM2's tokenizer saved to ``folder`` with ``template`` as its tokenizer_config.json chat template."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)  # the template lives in tokenizer_config.json, as in the Qwen2.5 and Llama-3 repositories
    path = os.path.join(folder, "tokenizer_config.json")
    with open(path) as fh:
        config = json.load(fh)
    config["chat_template"] = template
    with open(path, "w") as fh:
        json.dump(config, fh)
    loaded = AutoTokenizer.from_pretrained(folder)
    assert loaded.chat_template == template
    return loaded


def _messages():
    questions = ["Which response makes more sense?", "Which response is more engaging?"]
    return prompt_messages(template=PROMPT_V2, persona="I keep bees on my roof.",
                           history=[{"role": "user", "text": "Hi! Any tips for someone new in town?"}],
                           generic_response="Welcome!", response_a="Come by the market.", response_b="Hello.",
                           question=questions[0], all_questions=questions)


@pytest.fixture(scope="module", params=["smollm2", "qwen2.5", "llama-3"])
def templated(request, smollm2_tokenizer, tmp_path_factory):
    if request.param == "smollm2":
        return request.param, smollm2_tokenizer
    template = QWEN25_TEMPLATE if request.param == "qwen2.5" else LLAMA3_TEMPLATE
    return request.param, _with_template(smollm2_tokenizer, template, tmp_path_factory.mktemp(request.param))


def test_every_spelling_of_an_option_at_the_answer_position_counts_for_that_option(templated):
    name, tokenizer = templated
    messages = _messages()
    prompt = encode_messages(tokenizer, messages)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = option_token_ids(tokenizer)
    for option in OPTIONS:
        answered = 0
        for spelling in OPTION_SPELLINGS[option]:
            with_answer = tokenizer(text + spelling, add_special_tokens=False)["input_ids"]
            if with_answer[:len(prompt)] == prompt and len(with_answer) == len(prompt) + 1:
                # The model writes this spelling as one token right after the prompt: it is that option.
                assert with_answer[-1] in ids[option], (name, spelling)
                answered += 1
        # At least the capital letter and its lowercase start right at the answer position.
        assert answered >= 2, (name, option)
        # Case and a leading space: every single-token spelling belongs to its option, to no other.
        spelled = {tokenizer.decode([t]).strip() for t in ids[option]}
        assert spelled == {option, option.lower()}, (name, spelled)


def test_the_prompt_ends_where_the_tokenizer_puts_the_boundary_before_the_answer(templated):
    name, tokenizer = templated
    messages = _messages()
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = encode_messages(tokenizer, messages)
    for option in OPTIONS:
        with_answer = tokenizer(text + option, add_special_tokens=False)["input_ids"]
        assert with_answer[:-1] == prompt, name
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    if name == "llama-3":
        # Alone, the preamble's "\n\n" is one token; before an answer it is two. The model predicts
        # its answer after the two, so that is how the prompt must end.
        assert tokenizer.convert_ids_to_tokens(plain[-1:]) == ["ĊĊ"]
        assert tokenizer.convert_ids_to_tokens(prompt[-2:]) == ["Ċ", "Ċ"]
        assert prompt != plain
    else:
        assert prompt == plain  # "<|im_start|>assistant\n": the letter starts a token of its own


def test_smollm2s_option_tokens_are_the_letters_in_both_cases_with_and_without_a_space(smollm2_tokenizer):
    ids = option_token_ids(smollm2_tokenizer)
    tokens = {option: sorted(smollm2_tokenizer.convert_ids_to_tokens(ids[option])) for option in OPTIONS}
    assert tokens == {"A": ["A", "a", "ĠA", "Ġa"], "B": ["B", "b", "ĠB", "Ġb"], "S": ["S", "s", "ĠS", "Ġs"]}
