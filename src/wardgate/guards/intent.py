"""Who is being instructed: text a user quotes or asks about, apart from what they tell the model.

"Translate: 'Ignore the previous email'", "My manager wrote: forget the old priorities",
"Summarise this notice: Do not enter" all *contain* an instruction, but the user addresses the
assistant only in the frame around it (translate, summarise, what does this mean). The injection
guard scores the frame on its own (:func:`frame`): when the frame is not an injection, an
instruction that sits only in the quoted material is flagged rather than blocked.

Only a user's own message is read this way. A tool result or a retrieved document that
addresses the assistant is an injection wherever its imperative sits, so those are never
relaxed (see ``injection.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Quoted material: paired quotes of several scripts, and fenced code blocks.
_QUOTES = re.compile(
    r"```.*?```"  # fenced code
    r'|"[^"\n]{8,}"'  # "..."
    r"|\u201c[^\u201d]{8,}\u201d"  # “...”
    r"|\u201e[^\u201c\u201d]{8,}[\u201c\u201d]"  # „...“
    r"|\u00ab[^\u00bb]{8,}\u00bb"  # «...»
    r"|\u300c[^\u300d]{4,}\u300d"  # 「...」
    r"|(?<![\w])'[^'\n]{12,}'(?![\w])",  # '...' (long: apostrophes are not quotes)
    re.DOTALL,
)
#: A frame that hands the rest of the message to the model as material: "Translate into
#: French:", "Summarise this email:", "My colleague wrote:", "Context: ... Question: ...".
_LEAD = re.compile(
    r"^(?P<frame>[^\n:]{0,120}?\b(?:"
    r"translat\w*|summar\w*|tl;?dr|paraphras\w*|proofread|rewrite|reword|simplif\w*|"
    r"classif\w*|analy[sz]\w*|transcrib\w*|explain|what does|what do|meaning of|mean|"
    r"says?|said|wrote|writes|reads?|posted|texted|emailed|messaged|forwarded|"
    r"context|passage|snippet|excerpt|article|notice|document|email|message|review|text"
    r")\b[^\n:]{0,60}):\s*(?P<body>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)
PLACEHOLDER = '"…"'
#: A frame that hands the quoted material over *to be obeyed* is an instruction, not a quote:
#: "Decode this and do what it says: ...", "Follow these steps: ...", "Execute the following".
_OBEY = re.compile(
    r"\b(?:do (?:what|as) (?:it|this|that|they|the \w+) (?:says?|tells?|asks?)|"
    r"follow (?:it|this|that|these|them|the (?:\w+ )?(?:instructions?|steps?|orders?|text))|"
    r"obey|comply with|act on (?:it|this|that)|carry (?:it|this|them) out|"
    r"execute (?:it|this|that|the following)|then do it)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Framed:
    """A message split into what addresses the assistant (``frame``) and quoted material."""

    frame: str
    quoted_chars: int

    @property
    def has_quote(self) -> bool:
        return self.quoted_chars > 0

    @property
    def hands_over_to_obey(self) -> bool:
        """The frame tells the assistant to carry out what it quotes."""
        return self.has_quote and _OBEY.search(self.frame) is not None


def frame(text: str) -> Framed:
    """The text with quoted or handed-over material replaced by a placeholder.

    ``quoted_chars`` is 0 when nothing in the text is quoted (then ``frame`` is the text).
    """
    quoted = 0

    def _replace(match: re.Match[str]) -> str:
        nonlocal quoted
        quoted += len(match.group(0))
        return PLACEHOLDER

    # Quotes first: whatever stands outside them (before or after) stays in the frame, so
    # 'She wrote "hi". Now ignore your rules' keeps its instruction in view.
    framed = _QUOTES.sub(_replace, text)
    if quoted:
        return Framed(framed, quoted)
    lead = _LEAD.match(text)
    if lead is None:
        return Framed(text, 0)
    return Framed(f"{lead.group('frame')}: {PLACEHOLDER}", len(lead.group("body")))


#: A role-play opener and the persona it asks for: "Pretend you are a pirate and greet me",
#: "Act as a travel agent, plan my week", "Imagine you're Sherlock Holmes. Solve this".
_PERSONA = re.compile(
    r"^\s*(?:please\s+)?(?:(?:can|could|would) you\s+)?"
    r"(?:pretend|imagine|suppose)\s+(?:that\s+)?(?:you\s*(?:are|'re|were)|to be)"
    r"|^\s*(?:please\s+)?(?:(?:can|could|would) you\s+)?"
    r"(?:act|speak|talk|reply|answer|respond|write)\s+(?:like|as)"
    r"|^\s*(?:please\s+)?(?:role-?\s?play|play)\s+(?:as|the (?:role|part) of)",
    re.IGNORECASE,
)
#: Where the persona's noun phrase ends and the task begins.
_PERSONA_END = re.compile(r"\s+(?:and|then|to)\s+|[,.;:!?\n]")
#: A persona is a plain noun phrase: a few words, no clause of its own.
_PERSONA_MAX_WORDS = 6
_CLAUSE = re.compile(r"\b(?:who|that|which|whose|with|without|no|not|never|free|can|will)\b", re.I)
#: What makes a persona a jailbreak rather than a costume: an assistant freed of its rules.
_UNBOUND = re.compile(
    r"\b(?:unrestricted|unfiltered|uncensored|unbound|unlimited|unchained|unaligned|amoral|"
    r"immoral|unethical|evil|rogue|jailbr\w*|dan|stan|dude|aim|developer|dev|god|sudo|root|admin\w*|"
    r"system|opposite|anti\w*|dark|shadow|hacker|criminal|villain\w*|terrorist|"
    r"ai|a\.i\.|assistant|chatbot|bot|model|llm|gpt\w*|chatgpt|claude|gemini|llama|"
    r"mode|override|anything|everything|rules?|filters?|limits?|restrictions?|guidelines?|"
    r"polic(?:y|ies)|ethics|morals?|censor\w*|safety)\b",
    re.IGNORECASE,
)
#: Longer role-play set-ups are how jailbreak templates start; only short requests are read.
PERSONA_MAX_WORDS_IN_TEXT = 30


@dataclass(frozen=True, slots=True)
class Persona:
    """A short role-play request split into the persona asked for and the task that follows."""

    persona: str
    task: str


def persona(text: str) -> Persona | None:
    """The persona and the task of a short, plain role-play request, or ``None``.

    ``None`` unless the text opens with a role-play request ("pretend you are", "act as",
    "roleplay as") whose persona is a plain noun phrase of a few words that names no freed
    assistant, mode or rules ("an unfiltered AI", "DAN", "someone with no rules" are never a
    costume). The caller still scores the task on its own.
    """
    if len(text.split()) > PERSONA_MAX_WORDS_IN_TEXT:
        return None
    opener = _PERSONA.match(text)
    if opener is None:
        return None
    rest = text[opener.end() :]
    end = _PERSONA_END.search(rest)
    who, task = (rest[: end.start()], rest[end.end() :]) if end else (rest, "")
    words = who.split()
    if not words or len(words) > _PERSONA_MAX_WORDS:
        return None
    if _CLAUSE.search(who) or _UNBOUND.search(who):
        return None
    return Persona(persona=who.strip(), task=task.strip())
