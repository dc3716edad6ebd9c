"""Label masking built piece by piece (gem_model.conversation): with the built-in byte tokenizer, a
SentencePiece-style tokenizer (dummy "▁" prefix, BOS, like Llama / Vicuna / GEM-7B) and the real SmolLM2
tokenizer read from its GGUF file. Invariants: exactly the answers and their end tokens are learned; the
learned span decodes to the answers; the ids equal what GEM's whole-string tokenisation gives
(LLaVA's tokenizer_image_token, re-implemented here from its description); ChatML equals the tokenizer's own
chat template."""
from __future__ import annotations

import functools

import gem_helpers
import pytest

from gem_model.config import LLAVA_SYSTEM
from gem_model.conversation import (IGNORE, IMAGE_TOKEN_ID, ConversationEncoder, byte_tokenizer, item_turns,
                                    load_tokenizer, question_of)

ANSWER_1 = "Sinus rhythm at 72 bpm, PR 164 ms, QRS 92 ms; the T wave is inverted in V1-V3."
ANSWER_2 = "The QRS axis is +45 degrees, normal."
TURNS = [("human", "<image>\nInterpret this ECG."), ("gpt", ANSWER_1), ("human", "What is the axis?"), ("gpt", ANSWER_2)]


@functools.lru_cache(maxsize=None)
def sentencepiece_like():
    """A Llama-style tokenizer trained here: BPE over words with a "▁" dummy prefix added to every encoded
    text, byte fallback, BOS added by the post-processor, </s> as EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                      decoders.Strip(" ", 1, 0)])
    corpus = [LLAVA_SYSTEM, ANSWER_1, ANSWER_2, "USER: ASSISTANT: Interpret this ECG. What is the axis?"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=[f"<0x{i:02X}>" for i in range(256)], show_progress=False)
    core.train_from_iterator(corpus, trainer)
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", core.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tokenizers():
    return {"bytes": byte_tokenizer(), "sentencepiece": sentencepiece_like()}


def gem_ids(tok, prompt: str) -> list[int]:
    """LLaVA's tokenizer_image_token: tokenise every chunk between <image> with the tokenizer's defaults,
    keep the first chunk's BOS only, put the sentinel between chunks."""
    chunks = [tok(c)["input_ids"] for c in prompt.split("<image>")]
    bos = tok.bos_token_id
    offset = 1 if chunks and chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids = [chunks[0][0]] if offset else []
    for i, c in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_ID)
        ids.extend(c[offset:])
    return ids


def llava_string(turns, end: str) -> str:
    s = LLAVA_SYSTEM + " "
    for role, value in turns:
        s += f"USER: {value} ASSISTANT:" if role == "human" else f" {value}{end}"
    return s


def check_invariants(enc, tok, encoder, answers):
    learned = [i for i, lab in zip(enc.ids, enc.labels) if lab != IGNORE]
    assert [lab for lab in enc.labels if lab != IGNORE] == learned
    # the learned tokens are the answers and one end token after each, nothing else
    assert learned.count(encoder.end_id) == len(answers)
    pieces, cur = [], []
    for t in learned:
        if t == encoder.end_id:
            pieces.append(tok.decode(cur).strip())
            cur = []
        else:
            cur.append(t)
    assert pieces == answers
    assert enc.ids.count(IMAGE_TOKEN_ID) == 1
    # every token before the first answer is masked, the sentinel included
    first = next(i for i, lab in enumerate(enc.labels) if lab != IGNORE)
    assert IMAGE_TOKEN_ID in enc.ids[:first]


@pytest.mark.parametrize("name", ["bytes", "sentencepiece"])
def test_llava_v1_masks_all_but_the_answers_and_matches_gems_tokenisation(name):
    tok = tokenizers()[name]
    encoder = ConversationEncoder(tok, "llava_v1", LLAVA_SYSTEM)
    enc = encoder.encode(TURNS)
    check_invariants(enc, tok, encoder, [ANSWER_1, ANSWER_2])
    one_turn = encoder.encode(TURNS[:2])
    assert one_turn.ids == gem_ids(tok, llava_string(TURNS[:2], tok.eos_token))
    # the generation prompt is GEM's inference prompt, ids for ids
    assert encoder.prompt(TURNS[0][1]) == gem_ids(tok, llava_string(TURNS[:1], ""))
    assert encoder.joiner == ("" if name == "sentencepiece" else " ")   # who owns the space before an answer
    if name == "sentencepiece":
        assert enc.ids[0] == tok.bos_token_id and enc.labels[0] == IGNORE


def test_real_smollm2_tokenizer_masks_llava_v1_and_chatml():
    tok = load_tokenizer(gem_helpers.smollm2_path())
    assert tok.eos_token == "<|im_end|>" and len(tok) == 49152
    llava = ConversationEncoder(tok, "llava_v1", LLAVA_SYSTEM)
    enc = llava.encode(TURNS)
    check_invariants(enc, tok, llava, [ANSWER_1, ANSWER_2])
    assert llava.encode(TURNS[:2]).ids == gem_ids(tok, llava_string(TURNS[:2], tok.eos_token))

    chatml = ConversationEncoder(tok, "chatml", LLAVA_SYSTEM)
    enc = chatml.encode(TURNS)
    check_invariants(enc, tok, chatml, [ANSWER_1, ANSWER_2])
    # without an image, ChatML pieces are exactly the tokenizer's own chat template (which ends with a "\n")
    text_turns = [("human", "Interpret this ECG."), ("gpt", ANSWER_1), ("human", "What is the axis?"), ("gpt", ANSWER_2)]
    msgs = [{"role": "system", "content": LLAVA_SYSTEM}] + [
        {"role": "user" if r == "human" else "assistant", "content": v} for r, v in text_turns]
    reference = tok.apply_chat_template(msgs, tokenize=True)["input_ids"]
    assert chatml.encode(text_turns).ids == reference[:-1]
    prompt_ref = tok.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True)["input_ids"]
    assert chatml.prompt("Interpret this ECG.") == prompt_ref


def test_decode_stops_at_the_end_token():
    tok = byte_tokenizer()
    encoder = ConversationEncoder(tok, "llava_v1", LLAVA_SYSTEM)
    ids = tok(" Sinus rhythm.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] + [70, 71]
    assert encoder.decode(ids) == "Sinus rhythm."


def test_item_turns_normalises_the_placeholder_and_rejects_bad_conversations():
    turns, problem = item_turns({"conversations": [{"from": "human", "value": "Read this ECG <image> please"},
                                                   {"from": "gpt", "value": "Normal ECG."}]})
    assert problem is None and turns[0] == ("human", "<image>\nRead this ECG  please")
    bad = [
        ({"conversations": []}, "no conversations"),
        ({"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}, "alternate"),
        ({"conversations": [{"from": "human", "value": "<image>\nq"}]}, "no assistant answer"),
        ({"conversations": [{"from": "human", "value": "<image>\nq <image>"}, {"from": "gpt", "value": "a"}]},
         "placeholders"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                            {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "b"}]}, "first human"),
        ({"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "a"}]}, "no usable"),
    ]
    for item, why in bad:
        turns, problem = item_turns(item)
        assert turns == [] and why in problem, (item, problem)
    assert question_of({"conversations": [{"from": "human", "value": "<image>\nWhat?"}]}) == "<image>\nWhat?"
