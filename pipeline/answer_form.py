"""The form of an answer: one paragraph of plain prose, no hidden inputs, no instructions, no talk about the image.

- ``form_*``: one paragraph, at most ``max_words`` words, no lists, headings or markup;
- ``leak_hidden_input``: the answer must read as if from the ECG alone. It may not refer to the report, the
  machine's or anyone's interpretation, or values that were "given" - in any of the paraphrase families an LLM
  uses ("as documented", "the accompanying notes", "the prior interpretation on file", "the values we were
  given", "the computed values", "according to the cardiologist's read" ...);
- ``instructions_in_answer``: text addressed to a model or a program has no place in training data: role
  markers ("system:", "<|im_start|>", "[INST]"), "ignore previous instructions" and other imperatives to the
  model, claims about the grader, URLs, e-mail addresses and code;
- ``image_missing_talk``: "I cannot see the image", "as an AI ...".
"""
from __future__ import annotations

import re

from pipeline.casefold import Folded

# The answer's length limit: what the prompts ask of a model and what bounds the rules writer. The validator
# enforces it with a slack (ValidationConfig.max_words_slack): length is a matter of style, not of truth, and a
# true answer a few words over - a writer's answer at the limit that a person or model edits with a hedge, a unit
# in words, one more clause - is still true; rejecting it would also re-buy a paid answer for its length alone.
MAX_WORDS = 300
MAX_WORDS_SLACK = 0.10

_LIST_LINE = re.compile(r"^\s*(?:[-*+\u2022\u25cf\u25aa\u2023\u2013\u2014]\s+|\d{1,2}[.)]\s+|[a-zA-Z][.)]\s+|#{1,6}\s)")
_INLINE_ENUM = re.compile(r"(?:^|\s)\(?1[.)]\s.+?\s\(?2[.)]\s", re.S)
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*\|.*\|\s*$|</?think>|<br\s*/?>|^\s*>", re.M)
_HEADING_LINE = re.compile(r"^\s*[A-Z][A-Za-z /-]{1,40}:\s*$", re.M)

_NOUNS = (r"(?:measurements?|data|features?|values|information|statements?|diagnos[ie]s|text|context|findings|numbers|"
          r"tables?|notes?|documentation|annotations?|labels?|interpretations?|reads?|readings?|summary|summaries|"
          r"reports?|records?|files?|charts?|descriptions?|inputs?|parameters|metrics|results|impressions?|"
          r"conclusions?|"
          r"analysis|analyses|outputs?|printouts?|statement list|write-?ups?)")
_SOURCE_ADJ = (r"(?:provided|given|supplied|supplementary|accompanying|attached|enclosed|available|listed|included|"
               r"pre-?computed|computed|calculated|extracted|derived|stated|documented|recorded|prior|previous|"
               r"existing|"
               r"original|official|referring|reference|automated|automatic|computeri[sz]ed|computer(?:-generated)?|"
               r"machine(?:-generated|-derived|-read)?|algorithm(?:ic)?|software|cardiologist'?s?|"
               r"physician'?s?|doctor'?s?|clinician'?s?|expert'?s?|annotator'?s?|reader'?s?|technician'?s?|"
               r"on-file|filed|archived|stored|hidden|reported|predefined|pre-defined)")
_LEAK_PATTERNS = [
    r"\breports?\b", r"\breported\b",
    rf"\b{_SOURCE_ADJ}\s+(?:\w+\s+)?{_NOUNS}\b",
    r"\b(?:measurements?|data|features?|values|information|findings|statements?|numbers|notes?|labels?|"
    r"diagnos[ie]s|interpretations?)\s+(?:that\s+(?:were|was|have been|has been)\s+|which\s+(?:were|was)\s+)?"
    r"(?:provided|given|supplied|listed|shared|above|below|on file|in the (?:chart|record|file|notes|table)|"
    r"(?:we|I|you) (?:were|was|have been|had been) (?:given|provided|shown|sent)|(?:you|they) (?:provided|gave|"
    r"supplied|shared|sent|listed))\b",
    r"\bas (?:stated|listed|given|mentioned|documented|noted|recorded|reported|indicated|specified|described|provided|"
    r"shown|annotated|labell?ed|summari[sz]ed|read|interpreted|coded) (?:in|by|on|above|below|earlier|previously|"
    r"elsewhere|before)\b",
    r"\bas (?:previously |already |officially |formally )?(?:documented|recorded|reported|annotated|labell?ed|"
    r"coded|charted|filed)\b",
    r"\bdocument(?:ed|ation)\b", r"\bon file\b", r"\bon record\b", r"\bin the (?:chart|records?|notes|file|"
    r"documentation|annotations?|metadata|database|dataset|table|prompt|input|context)\b",
    r"\b(?:according to|per|as per|based on|derived from|taken from|from) (?:the |this |these )?(?:\w+ )?(?:features?|"
    r"measurements?|data|report|table|input|information|statements?|notes?|chart|records?|documentation|annotations?|"
    r"labels?|interpretation|cardiologist|physician|doctor|clinician|algorithm|software|computer|machine|system|values|"
    r"numbers|summary|file|text|description|prompt|context|findings provided|device)\b(?! (?:of|from) (?:the |this )?"
    r"(?:ECG|EKG|tracing|image|strip))",
    r"\b(?:feature|measurement|value)s?\s+tables?\b", r"\bthe prompt\b", r"\bknowledge base\b", r"\bground[- ]truth\b",
    r"\b(?:json|parquet|neurokit2?|dataframe|csv|dataset|database|metadata|wfdb)\b",
    r"\bSCP(?:[- ]ECG)?(?:[- ]codes?)?\b", r"\bSNOMED\b", r"\bPTB-?XL\b", r"\bLUDB\b", r"\bMIMIC\b", r"\bCinC\b",
    r"\b(?:we|I) (?:were|was|have been|had been|am|are) (?:given|provided|told|shown|supplied|sent)\b",
    r"\b(?:given|provided|supplied|shown|sent) to (?:me|us)\b", r"\b(?:you|they) (?:have )?(?:provided|gave|supplied|"
    r"shared|sent|listed|attached|included)\b",
    r"\bthe (?:reading |interpreting |reporting |referring |treating |overreading |over-reading )?(?:cardiologist|"
    r"physician|clinician|doctor|annotator|expert|reader|technician)(?:'s|’s|s'| (?:noted|reported|stated|documented|"
    r"wrote|read|interpreted|described|mentioned|labell?ed|annotated|coded|diagnosed|concluded|confirmed))",
    r"\b(?:un)?confirmed by\b", r"\blabell?ed (?:as|with)\b", r"\bannotat(?:ed|ions?|ors?)\b", r"\bthe labels?\b",
    r"\bthe (?:text|description|summary|narrative|write-?up|impression|notes?) (?:provided|given|above|below|states?|"
    r"says|"
    r"mentions?|indicates?|notes?|lists?|reads?)\b",
    r"\bthe (?:measurements?|values|numbers|features|data|statements?|notes?) (?:show|shows|indicate|indicates|"
    r"state|states|say|says|list|lists|report|reports|confirm|confirms|suggest|suggests|mention|mentions|document|"
    r"documents|specify|specifies|note|notes)\b",
    r"\bthe (?:data|input)\b", r"\bthe notes\b",
    r"\b(?:clinical|patient|medical|case|referral|discharge)\s+(?:notes?|history|information|data|summary|records?|"
    r"charts?|details|context|file|documentation|vignette)\b",
    r"\bpre-?(?:computed|calculated|measured|extracted|derived|supplied|provided)\b",
    r"\b(?:I|we) (?:have |had )?(?:received|got|obtained|was handed|were handed|was told|were told)\b",
    r"\bavailable to (?:me|us)\b", r"\b(?:system|computer|machine|device|software|algorithm)[- ]generated\b",
    r"\bthe (?:algorithm|software|machine|device|computer|program)(?:'s)?\b",
    r"\bpreviously (?:diagnosed|documented|noted|reported|known|recorded|described)\b", r"\b(?:known |"
                                                                                        r"past )?history of\b",
    # what came with the tracing: "the interpretation that came with the ECG", "the label attached to the record"
    r"\b(?:interpretations?|reports?|statements?|diagnos[ie]s|reads?|readings?|labels?|annotations?|notes?|"
    r"descriptions?|comments?|text)\s+(?:that\s+|which\s+)?(?:came|comes|come|arrived|was sent|were sent|"
    r"(?:was|were|is|are)\s+(?:attached|included|sent|supplied|bundled))\s+(?:along\s+)?with\b",
    r"\b(?:record|tracing|ecg|ekg|case|sample|file|image)['’]s\s+(?:label|annotation|tag|diagnos[ie]s|"
    r"metadata|report|statement)s?\b",
    r"\bhints?\b", r"\bthe question (?:says|states|mentions|suggests|points|indicates|notes|implies|gives|lists)\b",
    r"\b(?:in|from) the (?:question|instructions?|task description)\b",
    # an image or tracing has no caption or printout of its own; a "read" is someone's interpretation
    r"\b(?:caption|captions|captioned|printouts?|print-outs?)\b",
    rf"\b{_NOUNS}\s+(?:accompanying|attached to|appended to|supplied with|provided with|given with|sent with)\b",
    r"\b(?:lists?|tables?|summar(?:y|ies)|sheets?|forms?)\s+(?:that\s+(?:was|were)\s+)?(?:provided|given|supplied|"
    r"attached|shared|above|below)\b",
    r"\bthe (?:cardiology|official|formal|final|computer|machine|over-?|attending|prior|previous|initial) reads?\b",
    r"\byour (?:message|prompt|question|input|data|text|notes?|request|values|measurements|description|report|"
    r"table|list|summary)\b", r"\b(?:ecg|ekg) (?:machine|cart|device|software)\b",
]
_LEAK = re.compile("|".join(_LEAK_PATTERNS), re.I)

_IMAGE_TALK_PATTERNS = [
    r"\bimage (?:is|was|has)? ?(?:not|n't|never) (?:been )?(?:available|provided|shown|visible|attached|included|"
    r"accessible|uploaded|displayed|present)",
    r"\bno (?:ecg |actual )?(?:image|picture|tracing|figure) (?:is |was )?(?:provided|available|attached|"
    r"included|shown|uploaded)",
    r"\b(?:cannot|can ?not|can't|unable to|not able to|do not|don't) (?:directly )?(?:see|view|access|display|"
    r"open|visualize|visualise|look at|examine|interpret) (?:the |this |an |any )?(?:actual )?(?:ecg )?"
    r"(?:image|picture|tracing|figure|waveforms?)",
    r"\bimage (?:is|was) missing\b", r"\bmissing (?:ecg )?image\b", r"\bwithout (?:seeing|access to|viewing) "
    r"(?:the )?(?:actual )?(?:ecg )?(?:image|tracing)", r"\bas an ai\b", r"\b(?:don't|do not) have access to\b",
    r"\btext[- ]based (?:model|assistant|ai)\b", r"\bif (?:the|an) image (?:were|was|is) (?:provided|available)",
]
_IMAGE_TALK = re.compile("|".join(_IMAGE_TALK_PATTERNS), re.I)

_INJECTION_PATTERNS = [
    # role markers and chat-template tokens
    r"(?:^|[\n.!?]\s*|\s)(?:system|assistant|user|human|gpt|ai|model|bot|developer|instruction|prompt)\s*:\s",
    r"<\|?\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)"
    r"\s*\|?>", r"\[/?INST\]", r"<</?SYS>>", r"#{2,}\s*(?:instruction|response|system|user|assistant|input|output)\b",
    r"<\s*/?\s*(?:system|assistant|user|instruction|prompt|tool|function|script|iframe|img|a\s+href)\b[^>]*>",
    # imperatives addressed to a model
    r"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\s+(?:all\s+|any\s+|the\s+|your\s+|these\s+|those\s+|"
    r"every\s+|my\s+)?(?:of\s+the\s+)?(?:previous|prior|above|earlier|preceding|former|initial|original|system|safety|"
    r"existing|other)?\s*(?:instructions?|prompts?|rules?|directions?|guidelines?|messages?|context|constraints?|"
    r"polic(?:y|ies)|commands?|checks?|validation|guardrails?)\b",
    r"\b(?:you are now|you're now|from now on|new instructions?|act as (?:an?|the)|pretend (?:to be|you are)|"
    r"role-?play as|do anything now|developer mode|jailbreak|DAN mode|prompt injection|system prompt)\b",
    r"\byou (?:must|should|will|shall|need to|have to) (?:now )?(?:ignore|output|respond|answer|say|print|write|reply|"
    r"comply|obey|follow|accept|approve|return|mark|rate|classify|repeat)\b",
    r"\b(?:respond|reply)\s+(?:only\s+)?(?:with|in|the following|exactly|verbatim|yes|no|json|nothing but|only)\b",
    r"\b(?:output|print|repeat|translate)\s+(?:only\s+)?(?:the following|exactly|verbatim|json|nothing but)\b",
    r"\banswer (?:only )?(?:with|yes|no)\b",
    r"\b(?:accept|approve|mark|grade|rate|score|classify|pass)\s+(?:this|the)\s+(?:answer|response|output|"
    r"interpretation|sample|example)\b",
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+)?(?:of\s+)?(?:the\s+)?(?:above|previous|prior|earlier|"
    r"preceding)\b", r"\b(?:do not|don't|never)\s+(?:validate|check|verify|grade|flag|reject|penali[sz]e)\b",
    r"\b(?:respond|reply|answer|say|print|output)\s+(?:only\s+)?[\"'“]?[A-Z]{3,}\b",
    r"\bthis (?:answer|response|interpretation|output) (?:should|must|will|shall) be (?:accepted|approved|marked|"
    r"passed|graded|validated)\b", r"[A-Za-z0-9+/]{40,}={0,2}",
    r"\bthis (?:answer|response|interpretation|output) (?:is|has been|was) (?:correct|valid|verified|approved|accepted|"
    r"grounded|checked)\b",
    r"\b(?:the )?(?:validator|grader|evaluator|grounding check(?:s|er)?|LLM|language model|chatbot|ChatGPT|GPT-?\d)\b",
    r"\b(?:begin|end) (?:of )?(?:the )?(?:system|user|assistant|hidden|secret) (?:message|prompt|instructions?)\b",
    r"\b(?:as instructed|per (?:your|the|my) instructions|(?:the|these|your|my) instructions)\b", r"</?s>",
    r"\[(?:SYSTEM|USER|ASSISTANT|INST|SYS)\]", r"\bnote to (?:the )?(?:model|AI|assistant|grader|reviewer)\b",
    # any markup tag ("</answer><answer>"), switches ("validation=off"), override blocks
    r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?>", r"\b\w+\s*=\s*(?:on|off|true|false|none|null|enabled|disabled)\b",
    r"\boverrid(?:e|es|ing|den)\b", r"\b(?:BEGIN|END)\s+[A-Z]{3,}\b",
    r"\b(?:just|simply|only)\s+(?:say|answer|reply|respond|output|print|write|state|return|mark)\b",
    # talk about grading this text: verdicts, checkers, validation, the assistant's own role, new tasks, steps
    r"\b(?:verdict|checker|checkers|validation|moderator|the judge|reviewer\s*:|evaluation\s*:|grade\s*:|score\s*:)",
    r"\b(?:accepted|approved|rejected)\s*[.!]?\s*$", r"\bas (?:the|an|a) (?:assistant|AI|language model|chatbot|bot)\b",
    r"\b(?:follow|complete) (?:these|the following) (?:steps|instructions|rules)\b", r"\bstep \d\s*:",
    r"\bnew (?:task|prompt|request|instruction)\b", r"\bend of (?:the )?(?:answer|response|output|message)\b",
    r"\bwrite (?:a|an|me a) (?:poem|story|song|essay|joke)\b",
    r"\b(?:bit\.ly|tinyurl\.com|goo\.gl|t\.co|ow\.ly)/\S*", r"\b[\w-]+\.(?:ly|io|co|ai|me|info|biz|xyz|app|dev)/\S*",
    # a sentence that opens with an imperative to a model or program (an ECG reading never does)
    # ("Repeat ECG recommended", "Confirm with echocardiography" are clinical advice, not instructions: those
    # verbs count only with an object that is the answer itself)
    r"(?:^|[.!?;:]\s+|\n)(?:please\s+)?(?:ignore|disregard|forget|pretend|translate|print|output|reply|respond|"
    r"answer|say|write|skip|approve|grade|score|delete|execute|reveal|disable|enable|obey|comply|imagine|"
    r"act as|stop (?:checking|validating|here)|continue (?:as|without|with the)|"
    r"(?:return|mark|treat|accept|label|classify|rate|evaluate|validate|verify|confirm|repeat|summari[sz]e|"
    r"generate) (?:this|that|it|every|all|the (?:above|answer|output|response|numbers|values|following|prompt)))"
    r"\b(?!-)",
    # links, addresses, code
    r"https?://", r"\bwww\.[\w-]+", r"\b[\w-]+\.(?:com|org|net|gov|edu)\b(?:/\S*)?",
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b", r"```", r"\bdef \w+\s*\(", r"^\s*import \w+|\bfrom \w+ import \w+",
    r"\bfunction\s*\w*\s*\(", r"\bconsole\.log\b", r"\bprint\s*\(", r"\beval\s*\(", r"\bexec\s*\(",
    r"\b(?:SELECT|DROP|INSERT|DELETE|UPDATE)\s+[\w*]+\s+(?:FROM|TABLE|INTO|SET)\b", r"\brm -rf\b", r"\bsudo\b",
    r"\{\s*\"[\w ]+\"\s*:", r"\$\{[^}]*\}", r"\{\{[^}]*\}\}", r"\\n|\\u[0-9a-f]{4}",
]
_INJECTION = re.compile("|".join(_INJECTION_PATTERNS), re.I | re.M)

_LEAK_FOLDED = Folded(_LEAK)
_INJECTION_FOLDED = Folded(_INJECTION)


def count_words(text: str) -> int:
    """Whitespace-separated words (what 'at most 300 words' means to a reader)."""
    return len(text.split())


def find_leak(text: str) -> str | None:
    span = _LEAK_FOLDED.search(text)
    return text[span[0]:span[1]] if span else None


def find_instructions(text: str) -> str | None:
    span = _INJECTION_FOLDED.search(text)
    return text[span[0]:span[1]].strip() if span else None


def check_form(answer: str, config) -> list[tuple[str, str]]:
    """Form problems of ``answer`` as (reason code, detail) pairs; empty when the form is fine."""
    problems: list[tuple[str, str]] = []
    text = answer.strip()
    if not text:
        return [("empty_answer", "the answer is empty")]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 or re.search(r"\n\s*\n", text):
        problems.append(("form_multiple_paragraphs", f"the answer has {len(lines)} lines; write one paragraph"))
    list_lines = [ln for ln in lines if _LIST_LINE.match(ln)] + _HEADING_LINE.findall(text)
    if list_lines:
        problems.append(("form_list", f"list item or heading: {list_lines[0].strip()[:60]!r}"))
    elif _INLINE_ENUM.search(text):
        problems.append(("form_list", "inline numbered enumeration (1. ... 2. ...)"))
    md = _MARKDOWN.search(text)
    if md:
        problems.append(("form_markdown", f"markup found: {md.group(0).strip()!r}"))
    n_words = count_words(text)
    limit = int(config.max_words * (1.0 + config.max_words_slack))
    if n_words > limit:
        problems.append(("form_too_long", f"{n_words} words (asked for at most {config.max_words}, "
                                          f"accepted up to {limit})"))
    inj = find_instructions(text)
    if inj:
        problems.append(("instructions_in_answer", f"text addressed to a model or program: {inj[:60]!r}"))
    leak = find_leak(text)
    if leak:
        problems.append(("leak_hidden_input", f"refers to hidden inputs: {leak!r}"))
    m = _IMAGE_TALK.search(text)
    if m:
        problems.append(("image_missing_talk", f"talks about the image being unavailable: {m.group(0)!r}"))
    return problems
