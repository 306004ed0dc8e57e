"""Degenerate generations (issue 16): loops and truncation are detected, flagged and counted.

The pure rules of modeling/text.py first, then the real SmolLM2 on the bundled demo data, whose
generic responses repeat one sentence and stop mid-sentence at max_new_tokens.
"""
import pytest

from modeling.text import (
    FLAG_LOOP,
    FLAG_MID_SENTENCE,
    FLAG_TOKEN_LIMIT,
    cut_loop,
    degenerate_flags,
    ends_mid_sentence,
    find_loop,
    flag_counts,
    flag_line,
)

# The demo's R_G for demo/test/demo-031/3 as SmolLM2 writes it (64 new tokens).
DEMO_LOOP = "I'm so sorry to hear about your plants dying. " * 5 + "I'm so sorry to hear about your plants"


@pytest.mark.parametrize("text,unit,copies,kept", [
    (DEMO_LOOP, "I'm so sorry to hear about your plants dying.", 5, "I'm so sorry to hear about your plants dying."),
    # A long sentence said twice in a row, after other sentences: the text up to its first copy stays.
    ("Hello there. I am here to help you with your homework. I am here to help you with your homework. I am",
     "I am here to help you with your homework.", 2, "Hello there. I am here to help you with your homework."),
    # Sentences compare by their words: case, punctuation and spacing do not matter (the last "Yes" counts).
    ("Yes. yes.  YES! Yes", "Yes.", 4, "Yes."),
    ("I love you I love you I love you I love you", "I love you", 4, "I love you"),
    ("我很好。我很好。我很好。", "我很好。", 3, "我很好。"),
    ("谢谢你谢谢你谢谢你谢谢你", "谢谢你", 4, "谢谢你"),
    ("Всё хорошо, спасибо большое. Всё хорошо, спасибо большое.", "Всё хорошо, спасибо большое.", 2,
     "Всё хорошо, спасибо большое."),
])
def test_loops_are_found_and_cut_to_their_first_occurrence(text, unit, copies, kept):
    loop = find_loop(text)
    assert (loop.unit, loop.copies) == (unit, copies)
    assert cut_loop(text) == kept
    assert find_loop(cut_loop(text)) is None


@pytest.mark.parametrize("text", [
    "Ha. Ha.", "I see. I see.", "hahahaha", "哈哈哈哈", "very good, very good",
    "I like tea. Do you like tea? I like coffee too.", '"Hi," I said, "nice to meet you."', "",
    "a" * 2000, "ab" * 1000,  # one or two characters repeated: an unbroken word (a study defect), not a loop
])
def test_ordinary_repetition_is_not_a_loop(text):
    assert find_loop(text) is None and cut_loop(text) == text


@pytest.mark.parametrize("text,mid", [
    ("I'm so sorry to hear about your plants", True),
    ("It's called \"Echoes of the Past\" and", True),
    ("I was going to say,", True),
    ("Fine, thanks!", False), ('He said "yes."', False), ("Really?)", False), ("See you 🙂", False),
    ("我很好。", False), ("आज मौसम अच्छा है।", False), ("Wait…", False), ("", False),
])
def test_a_text_cut_mid_sentence_ends_without_a_sentence_mark(text, mid):
    assert ends_mid_sentence(text) is mid


def test_flags_and_their_counts():
    demo = degenerate_flags(DEMO_LOOP, hit_limit=True)
    assert demo == {"flags": [FLAG_LOOP, FLAG_MID_SENTENCE, FLAG_TOKEN_LIMIT], "hit_limit": True,
                    "loop": {"unit": "I'm so sorry to hear about your plants dying.", "copies": 5}}
    assert degenerate_flags("Fine, thanks!", hit_limit=False) == {"flags": [], "hit_limit": False, "loop": None}
    assert degenerate_flags("  \n") == {"flags": ["empty"], "hit_limit": None, "loop": None}
    counts = flag_counts([demo, degenerate_flags("Fine."), degenerate_flags(""), None])
    assert counts == {"checked": 3, "flagged": 2, "unchecked": 1, "empty": 1, "loop": 1,
                      "cut_mid_sentence": 1, "hit_max_new_tokens": 1}
    assert flag_line(counts) == ("degenerate outputs: 2 of 3 flagged (1 empty, 1 loop, 1 cut_mid_sentence, "
                                 "1 hit_max_new_tokens); 1 made before flags existed, unchecked")


def test_a_row_of_new_tokens_hit_the_limit_when_it_ends_without_a_stop_token():
    import torch

    from modeling.llm.backends import stopped_at_limit

    eos, pad = 2, 0
    rows = torch.tensor([[5, 6, 7, 8], [5, 6, eos, pad], [5, 6, 7, eos]])
    assert stopped_at_limit(rows, stop_ids={eos, pad}, max_new_tokens=4) == [True, False, False]
    # Every row stopped before the limit: the batch ended early, none hit it.
    assert stopped_at_limit(rows[:, :3], stop_ids={eos, pad}, max_new_tokens=4) == [False, False, False]


# --- the real SmolLM2 -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    import torch

    from modeling.llm.backends import TransformersBackend

    threads = torch.get_num_threads()
    backend = TransformersBackend("smollm2", cpu_threads=1)
    yield backend
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_the_backend_says_which_generation_hit_max_new_tokens(smollm2):
    from modeling.llm.backends import GenerationSettings

    prompts = [[{"role": "user", "content": "What is the capital of France? Answer with one word."}],
               [{"role": "user", "content": "Tell me about your favourite hobby."}]]
    short = smollm2.generate(prompts, settings=GenerationSettings(max_new_tokens=3), batch_size=2)
    long = smollm2.generate(prompts, settings=GenerationSettings(max_new_tokens=48), batch_size=2)
    # Greedy: the short generation is the start of the long one; it hit the limit exactly when the
    # long one goes on past it.
    for s, longer in zip(short, long):
        assert longer.startswith(s)
        assert s.hit_limit is (len(longer) > len(s))
    assert long[0] == "The capital of France is Paris." and long[0].hit_limit is False
    assert short[1].hit_limit is True and long[1].hit_limit is True


@pytest.mark.slow
@pytest.mark.django_db
def test_demo_generic_responses_are_cut_to_the_loops_first_occurrence_and_flagged(smollm2):
    from modeling.importers.service import dataset_import
    from modeling.llm.postprocess import clean_response
    from modeling.llm_services import augment_dataset, icl_generate
    from modeling.models import Dataset, LLMCache, Sample

    dataset_import(kind="jsonl", path="data/demo/demo.jsonl", name="demo")
    dataset = Dataset.objects.get(name="demo")
    # The demo's own settings (64 new tokens); the first four test samples hold one loop.
    summary = augment_dataset(dataset=dataset, split="test", limit=4, batch_size=4, backend=smollm2)
    samples = list(Sample.objects.filter(dataset=dataset, split="test").order_by("pk")[:4])
    raw = {row.output: row.raw_output for row in LLMCache.objects.all()}
    looped = [s for s in samples if FLAG_LOOP in s.generic_meta["degenerate"]["flags"]]
    assert [s.key for s in looped] == ["demo/test/demo-031/3"]
    sample = looped[0]
    assert sample.generic_response == "I'm so sorry to hear about your plants dying."
    generated = clean_response(raw[sample.generic_response])
    assert generated.count("I'm so sorry to hear about your plants dying.") == 5
    assert sample.generic_meta["degenerate"] == degenerate_flags(generated, hit_limit=True)
    for s in samples:
        assert find_loop(s.generic_response) is None  # no stored R_G loops
        assert s.generic_meta["degenerate"]["hit_limit"] is True  # all four ran into the 64 tokens
    assert summary["degenerate"] == flag_counts(s.generic_meta["degenerate"] for s in samples)
    assert summary["degenerate"]["loop"] == 1 and summary["degenerate"]["hit_max_new_tokens"] == 4

    # Answered from the cache, the same R_G and flags come back (hit_limit is not cached: None).
    Sample.objects.filter(pk=sample.pk).update(generic_response="", generic_meta={})
    again = augment_dataset(dataset=dataset, split="test", limit=4, backend=smollm2)
    sample.refresh_from_db()
    assert again["cached"] == 1 and sample.generic_response == "I'm so sorry to hear about your plants dying."
    assert sample.generic_meta["degenerate"]["flags"] == [FLAG_LOOP, FLAG_MID_SENTENCE]

    # ICL outputs keep their text as generated and are flagged the same way.
    from modeling.llm.backends import GenerationSettings

    systems = icl_generate(dataset=dataset, split="test", method="icl_tst", n_shot=0, limit=2, backend=smollm2,
                           settings=GenerationSettings(max_new_tokens=8))
    responses = list(systems[0].responses.order_by("sample_id"))
    for response in responses:
        assert response.text == clean_response(response.meta["raw"])
        assert response.meta["degenerate"] == degenerate_flags(response.text,
                                                               hit_limit=response.meta["degenerate"]["hit_limit"])
    assert systems[0].config["run"]["degenerate"] == flag_counts(r.meta["degenerate"] for r in responses)


def test_a_chat_completions_server_saying_length_marks_the_completion_as_hitting_the_limit():
    """OpenAICompatibleBackend reads finish_reason (vLLM and llama.cpp send "length" or "stop")."""
    import http.server
    import json
    import threading

    from modeling.llm.backends import GenerationSettings, OpenAICompatibleBackend

    reply = "I keep bees on my roof and sell honey at the market."

    class ChatCompletions(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            words = reply.split()
            cut = body["max_tokens"] < len(words)
            choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words[:body["max_tokens"]])},
                      "finish_reason": "length" if cut else "stop"}
            if body["messages"][0]["content"] == "old server":
                del choice["finish_reason"]
            data = json.dumps({"choices": [choice]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAICompatibleBackend("any", f"http://127.0.0.1:{server.server_address[1]}/v1", timeout=10)
        prompt = [{"role": "user", "content": "hi"}]
        cut, = backend.generate([prompt], settings=GenerationSettings(max_new_tokens=5))
        whole, = backend.generate([prompt], settings=GenerationSettings(max_new_tokens=64))
        unknown, = backend.generate([[{"role": "user", "content": "old server"}]],
                                    settings=GenerationSettings(max_new_tokens=5))
    finally:
        server.shutdown()
        server.server_close()
    assert (cut, cut.hit_limit) == ("I keep bees on my", True)
    assert (whole, whole.hit_limit) == (reply, False)
    assert unknown.hit_limit is None
    assert degenerate_flags(cut, hit_limit=cut.hit_limit)["flags"] == [FLAG_MID_SENTENCE, FLAG_TOKEN_LIMIT]


def test_human_replies_are_almost_never_flagged():
    """False positives on real text: 3,000 human SPC utterances hold no loop and few unfinished ends."""
    import csv

    from tests.conftest import shared_file

    texts = []
    with open(shared_file("spc/Synthetic-Persona-Chat_test.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts += [line.split(":", 1)[-1].strip() for line in row["Best Generated Conversation"].splitlines()
                      if ":" in line]
            if len(texts) >= 3000:
                break
    flags = [degenerate_flags(t)["flags"] for t in texts[:3000]]
    assert sum(FLAG_LOOP in f for f in flags) == 0
    assert sum(FLAG_MID_SENTENCE in f for f in flags) < 30  # "Sounds good", "Definitely": under 1 %


def test_a_unit_of_three_or_more_characters_repeated_in_one_word_is_a_loop():
    loop = find_loop("abc" * 700)
    assert loop is not None and loop.unit == "abc" and loop.copies == 700
