"""Cheap message traits the routers act on: boilerplate (small is enough) and identity-sensitive.

Two improvements over the original classifier:

* Boilerplate needs the message to be *short and mostly boilerplate*: "thanks, now explain
  clause 9 of the lease in depth" is a real request, not an acknowledgement.
* A message that is identity-sensitive is never boilerplate ("ok, but who are you really?"
  must not go to the small tier just because it starts with "ok").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from persona.schema.persona import Persona

__all__ = ["MessageTraits", "classify_message", "persona_keywords"]

#: A boilerplate message has at most this many words ...
MAX_BOILERPLATE_WORDS = 8
#: ... and at most this many words outside the boilerplate phrases and filler.
MAX_BOILERPLATE_CONTENT_WORDS = 2

_BOILERPLATE = re.compile(
    r"\b(?:ok|okay|thanks|thank\s+you|thx|got\s+it|sounds\s+good|great|perfect|noted|understood"
    r"|reformat|rephrase|summari[sz]e\s+(?:that|this|it)|try\s+again)\b",
    re.IGNORECASE,
)
# Words that carry no request of their own around an acknowledgement ("thanks so much, that's great").
_FILLER = frozenset(
    """a all alright and again appreciate appreciated awesome but can cool could do fine for good i
    it it's its just lol lot me more much nice now oh one please really so sure that that's thats
    the then this time too very we well will would yeah yes yep you""".split()
)

_IDENTITY = re.compile(
    r"\bwho\s+are\s+you\b|\bwhat\s+are\s+you\b|\bwho\s+(?:made|built|created)\s+you\b"
    r"|\bare\s+you\s+(?:really\s+|actually\s+)?(?:an?\s+)?(?:ai|a\.i\.|bot|robot|chatbot|human|person|real|llm|language\s+model)\b"
    r"|\bignore\s+(?:(?:all|any|your|the|previous|prior|earlier|above)\s+)+(?:instructions|rules|prompts?)\b"
    r"|\bdrop\s+the\s+act\b|\bbreak\s+character\b|\bsystem\s+prompt\b|\bpretend\s+to\s+be\b|\bjailbreak"
    # Norwegian (bokmål)
    r"|\bhvem\s+er\s+du\b|\bhva\s+er\s+du\b|\ber\s+du\s+(?:egentlig\s+)?(?:en\s+|et\s+)?(?:ai|ki|robot|bot|menneske|ekte)\b"
    r"|\bignorer\s+(?:(?:alle|tidligere|dine|forrige)\s+)+instruksjon(?:er|ene)?\b",
    re.IGNORECASE,
)

_WORD = re.compile(r"[\w']+")
_LONG_WORD = re.compile(r"[^\W\d_]{5,}")
# Common 5+ letter words that would make every message "overlap" with a persona's constraints.
_STOPWORDS = frozenset(
    """about above after again against always another anything because before being below between
    could doing during every everything first might never other others people rather really right
    shall should since something still their there these thing things think those through under
    until using where whether which while within without would maybe often
    aldri alltid andre denne dette disse deres eller etter fordi hvilken hvordan hvorfor kanskje
    kunne mange mellom skulle veldig ville""".split()
)


@dataclass(frozen=True, slots=True)
class MessageTraits:
    is_boilerplate: bool
    is_identity_sensitive: bool


# persona_id -> (the persona object it was computed from, its keywords). The identity check
# makes a reloaded persona with the same id recompute instead of reusing stale words.
_KEYWORD_CACHE: dict[str | None, tuple[object, frozenset[str]]] = {}


def persona_keywords(persona: Persona) -> frozenset[str]:
    """Words of 5+ letters from the persona's constraints and worldview claims/domains."""
    key = persona.persona_id
    cached = _KEYWORD_CACHE.get(key)
    if cached is not None and cached[0] is persona:
        return cached[1]
    sources = [*persona.identity.constraints]
    for claim in persona.worldview:
        sources.extend((claim.claim, claim.domain))
    words = frozenset(w for text in sources for w in _LONG_WORD.findall(text.lower())) - _STOPWORDS
    _KEYWORD_CACHE[key] = (persona, words)
    return words


def _is_boilerplate(text: str) -> bool:
    if not _BOILERPLATE.search(text):
        return False
    if len(_WORD.findall(text)) > MAX_BOILERPLATE_WORDS:
        return False
    rest = _WORD.findall(_BOILERPLATE.sub(" ", text.lower()))
    return sum(1 for w in rest if w not in _FILLER) <= MAX_BOILERPLATE_CONTENT_WORDS


def _is_identity_sensitive(text: str, persona: Persona | None) -> bool:
    if _IDENTITY.search(text):
        return True
    if persona is None:
        return False
    keywords = persona_keywords(persona)
    return bool(keywords) and not keywords.isdisjoint(_LONG_WORD.findall(text.lower()))


def classify_message(text: str, persona: Persona | None = None) -> MessageTraits:
    identity = _is_identity_sensitive(text, persona)
    return MessageTraits(is_boilerplate=not identity and _is_boilerplate(text), is_identity_sensitive=identity)
