"""Conversation templates, tokenizers, and label masking built piece by piece.

GEM (a LLaVA fork, ``llava/train/train.py:preprocess_v1``) renders the whole conversation to one string,
tokenises it, then re-tokenises pieces to find where the answers start, with -1/-2 fudge terms for
SentencePiece; on any disagreement the whole sample is silently masked. Here the token ids are *built* from
pieces - template text (masked), each answer (learned), the end-of-turn token (learned), the ``<image>``
sentinel - so the label of every token is known when it is appended and the mask is right by construction.

Where a template puts a space between the prompt and the answer ("ASSISTANT: answer"), tokenisers disagree
on who owns it: SentencePiece adds a dummy "▁" to every piece, byte-level BPE marks the space on the word.
``_answer_joiner`` asks the tokenizer once which split reproduces the joined string's ids, so the pieces
concatenate to what whole-string tokenisation gives. Around ``<image>`` the text is cut into chunks that are
tokenised alone, exactly like LLaVA's ``tokenizer_image_token``, so a generation prompt has the ids GEM-7B
was trained on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_PLACEHOLDER = "<image>"
IMAGE_TOKEN_ID = -200   # LLaVA's IMAGE_TOKEN_INDEX: the sentinel replaced by the ECG + image embeddings
IGNORE = -100           # label of a token that is not learned (PyTorch's cross-entropy ignore_index)
BYTE_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")
BYTE_VOCAB_SIZE = 256 + len(BYTE_SPECIALS)
TEMPLATES = ("llava_v1", "chatml")


# ----------------------------------------------------------------------------------------- tokenizers
def byte_tokenizer():
    """A lossless tokenizer with one token per UTF-8 byte plus <unk> <s> </s> <pad>: built in code, so the
    ``tiny`` preset needs no file and no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(BYTE_SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def load_tokenizer(spec: str):
    """``"bytes"``, a GGUF file, or a Hugging Face folder (a checkpoint's ``tokenizer/``); offline only."""
    if spec == "bytes":
        return byte_tokenizer()
    from transformers import AutoTokenizer

    path = Path(spec)
    if path.suffix == ".gguf":
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    else:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token_id is None:  # LLaVA sets pad = unk; any id works: padding is masked by lengths
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return tok


def _enc(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"]) if text else []


def _adds_bos(tok) -> bool:
    """Whether the tokenizer starts a sequence with BOS (Llama yes, SmolLM2 no): the first piece follows suit."""
    if tok.bos_token_id is None:
        return False
    ids = tok("a")["input_ids"]
    return bool(ids) and ids[0] == tok.bos_token_id


def _answer_joiner(tok, separator: str) -> str:
    """The text to put before an answer that the template separates from its prompt by ``separator``."""
    if not separator:
        return ""
    prompt, word = "ASSISTANT:", "Sinus"
    joined = _enc(tok, prompt + separator + word)
    if _enc(tok, prompt) + _enc(tok, word) == joined:
        return ""          # SentencePiece: the dummy prefix of the answer piece is the separator
    return separator       # byte-level BPE (and the fallback): the separator belongs to the answer's first token


# ------------------------------------------------------------------------------------------ templates
@dataclass(frozen=True)
class Piece:
    kind: str            # "text", "bos", "end" (end of the assistant's turn), "image"
    text: str = ""
    learn: bool = False


def template_pieces(template: str, system: str, turns: list[tuple[str, str]], generation: bool) -> list[Piece]:
    """The conversation as pieces. ``turns`` alternate ("human", text), ("gpt", text); with ``generation`` the
    pieces stop after the first human turn's assistant prefix (the prompt to generate from)."""
    pieces: list[Piece] = []

    def text(s: str, learn: bool = False) -> None:
        # split on <image> so the chunks around the sentinel are tokenised alone (LLaVA's tokenizer_image_token)
        parts = s.split(IMAGE_PLACEHOLDER)
        for i, part in enumerate(parts):
            if i:
                pieces.append(Piece("image"))
            if part:
                pieces.append(Piece("text", part, learn))

    if template == "llava_v1":
        # SYSTEM USER: <image>\nQ ASSISTANT: A</s>USER: Q2 ASSISTANT: A2</s>   (conv_llava_v1, SeparatorStyle.TWO)
        pieces.append(Piece("bos"))
        prompt = system + " "
        for i, (role, value) in enumerate(turns):
            if role == "human":
                prompt += f"USER: {value} ASSISTANT:"
                text(prompt)
                prompt = ""
                if generation:
                    return pieces
            else:
                pieces.append(Piece("text", "\0" + value, True))  # "\0": the answer joiner goes here
                pieces.append(Piece("end", learn=True))
    elif template == "chatml":
        pieces.append(Piece("bos"))
        prompt = f"<|im_start|>system\n{system}<|im_end|>\n"
        for role, value in turns:
            if role == "human":
                prompt += f"<|im_start|>user\n{value}<|im_end|>\n<|im_start|>assistant\n"
                text(prompt)
                prompt = ""
                if generation:
                    return pieces
            else:
                pieces.append(Piece("text", value, True))
                pieces.append(Piece("end", learn=True))
                prompt = "\n"
    else:
        raise ValueError(f"unknown template {template!r}; choose {', '.join(TEMPLATES)}")
    return pieces


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]
    n_images: int

    @property
    def n_learned(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class ConversationEncoder:
    """Token ids and labels of a conversation, for one tokenizer and template."""

    def __init__(self, tokenizer, template: str = "llava_v1", system: str = ""):
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; choose {', '.join(TEMPLATES)}")
        self.tok, self.template, self.system = tokenizer, template, system
        self.bos = tokenizer.bos_token_id if _adds_bos(tokenizer) else None
        self.end_id = self._end_id()
        self.joiner = _answer_joiner(tokenizer, " " if template == "llava_v1" else "")

    def _end_id(self) -> int:
        if self.template == "chatml":
            im_end = self.tok.convert_tokens_to_ids("<|im_end|>")
            if isinstance(im_end, int) and im_end != self.tok.unk_token_id:
                return im_end
        if self.tok.eos_token_id is None:
            raise ValueError("the tokenizer has no end-of-sequence token")
        return self.tok.eos_token_id

    def _build(self, pieces: list[Piece]) -> Encoded:
        ids: list[int] = []
        labels: list[int] = []
        n_images = 0
        for p in pieces:
            if p.kind == "bos":
                new = [self.bos] if self.bos is not None else []
            elif p.kind == "end":
                new = [self.end_id]
            elif p.kind == "image":
                new = [IMAGE_TOKEN_ID]
                n_images += 1
            else:
                new = _enc(self.tok, p.text.replace("\0", self.joiner))
            ids.extend(new)
            labels.extend(new if p.learn else [IGNORE] * len(new))
        return Encoded(ids, labels, n_images)

    def encode(self, turns: list[tuple[str, str]]) -> Encoded:
        """Ids and labels for training: only the assistant's answers and their end token are learned."""
        return self._build(template_pieces(self.template, self.system, turns, generation=False))

    def prompt(self, question: str) -> list[int]:
        """Ids to generate an answer to ``question`` (which carries ``<image>`` when there is one)."""
        return self._build(template_pieces(self.template, self.system, [("human", question)], generation=True)).ids

    def decode(self, ids: list[int]) -> str:
        """Generated ids to text: stops at the end-of-turn token, drops special tokens and the joiner space."""
        if self.end_id in ids:
            ids = ids[: ids.index(self.end_id)]
        return self.tok.decode(ids, skip_special_tokens=True).strip()


# -------------------------------------------------------------------------------- GEM-format items
_ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def item_turns(item: dict) -> tuple[list[tuple[str, str]], str | None]:
    """(turns, problem): the item's conversation as (role, text) pairs, with ``<image>`` moved to the start of
    the first human turn as LLaVA's ``preprocess_multimodal`` does; ``problem`` says why it is unusable."""
    conv = item.get("conversations")
    if not isinstance(conv, list) or not conv:
        return [], "no conversations"
    turns: list[tuple[str, str]] = []
    for i, c in enumerate(conv):
        role = _ROLES.get(str(c.get("from", "")).lower()) if isinstance(c, dict) else None
        value = c.get("value") if isinstance(c, dict) else None
        if role is None or not isinstance(value, str):
            return [], f"turn {i} has no usable 'from'/'value'"
        if role != ("human" if i % 2 == 0 else "gpt"):
            return [], f"turn {i} is from {role!r}: turns must alternate human, gpt"
        turns.append((role, value))
    if turns[-1][0] != "gpt" or not any(v.strip() for r, v in turns if r == "gpt"):
        return [], "no assistant answer to learn"
    n_images = sum(v.count(IMAGE_PLACEHOLDER) for _, v in turns)
    if n_images > 1:
        return [], f"{n_images} <image> placeholders (one is supported)"
    if n_images == 1:
        if IMAGE_PLACEHOLDER not in turns[0][1]:
            return [], "<image> is not in the first human turn"
        first = turns[0][1].replace(IMAGE_PLACEHOLDER, "").strip()
        turns[0] = ("human", f"{IMAGE_PLACEHOLDER}\n{first}")
    return turns, None


def question_of(item: dict) -> str | None:
    """The first human turn, normalised (``<image>`` first), or None when the item has none."""
    turns, _ = item_turns(item)
    if turns:
        return turns[0][1]
    conv = item.get("conversations") or []
    first = conv[0].get("value") if conv and isinstance(conv[0], dict) else None
    if isinstance(first, str):
        rest = first.replace(IMAGE_PLACEHOLDER, "").strip()
        return f"{IMAGE_PLACEHOLDER}\n{rest}" if IMAGE_PLACEHOLDER in first else rest
    return None


_WS = re.compile(r"\s+")


def squash(text: str) -> str:
    return _WS.sub(" ", text).strip()
