"""Street addresses and post boxes in text, found by their structure. Pure functions, no I/O.

A named-entity model tags cities and countries but rarely a street address ("6750 Koskikatu 25 Apt. 864"
is a date, a facility and a number to it), so addresses are found here, by the parts an address has:

- a house number and a street name with a street type, in English or another language, before or after
  the name ("14 Crown Street", "Via Franscini 71", "Hauptstraße 5", "Erzsébet tér 19.", "Koskikatu 25");
- or a house number, a capitalised name and a second number or a unit ("86036 Rua do Arenque 1634",
  "25 Allika 46 Suite 501");
- or a post box ("P.O. Box 123", "PSC 0413, Box 8144 / APO AA 42323").

Each signal adds to a score: a street type, a unit ("Apt. 864", "Suite 321"), a second number, words
before it that announce an address ("lives at", "address:", "send it to"), and what follows it, when it
reads like the rest of an address (", Goiânia", "\\nLONDON\\nUnited Kingdom 75419"). The span then runs
over those following parts too, so that a redaction hides the city and postcode with the street.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A house number, a word (any script, with inner hyphens/apostrophes and a closing abbreviation dot),
# a line break, or one other visible character.
_TOKEN = re.compile(
    r"(?P<num>(?<!\w)\d{1,6}[A-Za-z]?(?!\w))|(?P<word>(?<!\w)[^\W\d_]+(?:[-'’][^\W\d_]+)*(?![\w])\.?)"
    r"|(?P<other>\w+)|(?P<nl>\n)|(?P<punct>[^\s\w])"
)  # `other`: letters and digits mixed ("GATA1", "H7N9", "U251"), which no address part is

# Street types that follow the name: English ones ("14 Crown Street"), and others, which may also stand
# before the house number ("Erzsébet tér 19.", "Király u. 15").
_AFTER_EN = _words(
    """street st streets avenue ave avenues av road rd roads boulevard blvd lane ln lanes drive dr court ct
    place pl square sq squares terrace ter parkway pkwy highway hwy circle cir crescent cres close way alley
    plaza trail trl row mews grove gardens gdns walk wharf quay causeway expressway freeway pike turnpike loop
    heights hts estate ests junction jct crossing xing ridge motorway"""
)
_AFTER_OTHER = _words(
    """tér utca út útja körút rkp kapu ulica ul ulice str strasse straße gasse weg platz allee damm ufer
    vej gade gata gatan vägen väg vei veien katu kuja polku straat laan plein gracht kade dreef terrasse
    stræde"""
)
# Types that are English words when capitalised ("Gate 12", "Tie"), a street type when not ("Trenerys gate").
_LOWER_ONLY = frozenset({"gate", "vei", "tie"})
_AFTER = _AFTER_EN | _AFTER_OTHER
# English street types that are also common nouns ("3 Supreme Court justices"): alone they are not
# enough, a cue, a unit, a second number or a city after them must confirm the address.
_WEAK = _words(
    """court ct place pl square sq squares terrace ter circle cir close way row walk loop heights hts estate
    ests junction jct crossing ridge grove gardens plaza trail"""
)
_DIRECTIONS = _words("n s e w ne nw se sw north south east west")
# Street types that come before the name ("Via Franscini", "rue de Rivoli", "Calle Mayor").
_BEFORE = _words(
    """rue via viale vicolo piazza piazzale corso largo calle avenida avda paseo rua travessa praça estrada
    rodovia aleja al bulevar bulevardul strada chemin allée impasse cours quai carrer carretera camino
    ronda ulica ul odos trg"""
)
# Types that may start an address in lowercase: "ul. Miła 53", "trg revolucije 17".
_LOWER_BEFORE = frozenset({"ul", "al", "trg", "rue", "calle", "rua", "avenida", "ulica"})
# One-word street names: "Bundesstrasse", "Koskikatu", "Tawastintie", "Harjukuja", "Þorsteinsgata".
_COMPOUND = re.compile(
    r"(?:straße|strasse|gasse|weg|platz|allee|damm|gatan|gata|vägen|vej|vænget|gade|katu|tie|kuja|polku"
    r"|straat|laan|plein|gracht|utca|ulica|street|road|avenue|veien|vegen|stien|stræde|straede)$",
    re.IGNORECASE,
)
_NOT_COMPOUND = frozenset({"brigade", "renegade", "tie", "weg"})
_PARTICLES = _words(
    """de do da dos das del della dei di du des la le les van von der den am an y e of the el al and nad
    pod na im bei sur sous upon on"""
)
_UNITS = _words("apt apartment suite ste unit flat fl floor room rm no nr box bldg building")
_POSTBOX = re.compile(
    r"(?:\bP\.?\s?O\.?\s?Box|\bPost(?:al)?\s?(?:Office\s)?Box|\bPostbox|\b(?:PSC|CMR|Unit)\s+\d{1,6},?\s+Box)"
    r"\s+\d{1,6}(?:\s*\n?\s*(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5})?"
    r"|\b(?:USNS|USNV|USS|USCGC)\s+[^\W\d_]+(?:[ \t]+[^\W\d_]+)?\s*\n?\s*"
    r"(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}"
    r"|\b(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}\b",
    re.IGNORECASE,
)
_CUE = re.compile(
    r"(?:address(?:es)?(?:\s+is)?|lives?\s+(?:at|on|in)|living\s+at|located\s+at|resides?\s+at|moved\s+to"
    r"|send\s+(?:it|this|them|the\s+\w+|a\s+new\s+one)?\s*to|ship(?:ped)?\s+to|deliver(?:ed)?\s+to|mail(?:ed)?\s+to"
    r"|meet\s+(?:you|me|us)\s+at|off\s+at|office\s+is\s+at|is\s+at|at\s+the\s+corner\s+of|corner\s+of|visit\s+us\s+at"
    r"|billing|shipping|home|street|where)\W{0,12}$",
    re.IGNORECASE,
)
# Capitalised words that start sentences and are never part of a city's name.
_STOP = _words(
    """the a an i we you he she it they this that these those my our your his her their is are was were
    what who how why when where which please thanks thank hello hi dear yes no call phone email tel fax
    mobile and or but if then there here also see january february march april may june july august
    september october november december"""
)

ACCEPT = 0.7  # spans scoring below this are not reported


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num, word, nl, punct
    text: str
    start: int
    end: int

    @property
    def key(self) -> str:
        return self.text.rstrip(".").casefold()

    @property
    def capitalised(self) -> bool:
        return self.text[0].isupper()


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "punct"
        out.append(_Tok(kind, m.group(0), m.start(), m.end()))
    return out


def _is_house_number(text: str, tok: _Tok) -> bool:
    """A number that stands alone: not a decimal, a date, a time, an amount or part of a longer number."""
    before = text[max(0, tok.start - 2) : tok.start]
    after = text[tok.end : tok.end + 2]
    if re.search(r"[\d.,/:$€£%+-]$", before) or re.match(r"^[.,/:%-]\d|^%", after):
        return False
    return not re.match(r"^[.,/:][\d]", after)


def _is_compound(key: str) -> bool:
    m = _COMPOUND.search(key)
    return m is not None and m.start() >= 3 and key not in _NOT_COMPOUND


def _is_type(tok: _Tok) -> bool:
    """A street type that follows the name ("Street", "tér", "Bundesstrasse")."""
    if tok.kind != "word" or (tok.key in _LOWER_ONLY and not tok.text.islower()):
        return False
    if tok.text == "u.":  # Hungarian "utca": "Király u. 15"
        return True
    return tok.key in _AFTER or tok.key in _LOWER_ONLY or _is_compound(tok.key)


def _is_before(tok: _Tok) -> bool:
    """A street type that comes before the name ("Via", "rue", "ul.")."""
    return tok.kind == "word" and (tok.capitalised or tok.key in _LOWER_BEFORE) and tok.key in _BEFORE


def _separator(toks: list[_Tok], j: int) -> bool:
    """A line break or comma, or a quote marker at the start of a line ("> ", "??? ")."""
    t = toks[j]
    if t.kind == "nl" or t.text == ",":
        return True
    if t.kind != "punct" or t.text not in ">?|*" or j == 0:
        return False
    return toks[j - 1].kind == "nl" or _separator(toks, j - 1)


def _name_word(tok: _Tok) -> bool:
    return tok.kind == "word" and (tok.capitalised or _is_type(tok) or tok.key in _PARTICLES)


def _real_word(names: list[_Tok]) -> bool:
    """At least one word of three letters or more: "17 X 7" is not a street."""
    return any(sum(c.isalpha() for c in t.text) >= 3 for t in names)


def _unit(toks: list[_Tok], i: int) -> int:
    """The index after a unit ("Apt. 864", "Suite 321", "# 5") starting at `i`, or `i` if there is none."""
    j = i
    while j < len(toks) and j - i < 6 and (_separator(toks, j) or (toks[j].text == "." and j == i)):
        j += 1
    if j < len(toks) and (toks[j].key in _UNITS or toks[j].text == "#"):
        k = j + 1
        if k < len(toks) and toks[k].text in (".", "#", ":"):
            k += 1
        if k < len(toks) and toks[k].kind == "num":
            return k + 1
    return i


def _continuation(text: str, toks: list[_Tok], i: int) -> int:
    """The index after the rest of an address (city, region, postcode, country: pieces after a comma or
    a line break, each filling its line or comma-separated part), or `i` if none follows."""
    end = i
    pieces = 0
    j = i
    while pieces < 5 and j < len(toks):
        k = j
        separated = False
        while k < len(toks) and _separator(toks, k):
            separated = True
            k += 1
        if not separated and pieces:
            break
        if not separated and toks[k].kind != "num":
            break  # "... Street 75419" may follow without a comma; a word must be separated
        start = k
        words = 0
        while k < len(toks) and k - start < 6:
            t = toks[k]
            if t.kind == "num":
                k += 1
            elif t.kind == "word" and (t.capitalised or t.text.isupper()) and t.key not in _STOP:
                words += 1
                k += 1
            elif (t.kind == "word" and t.key in _PARTICLES and words) or (
                t.kind == "punct" and t.text in "()"
            ):
                k += 1
            else:
                break
        if k == start:
            break
        # The piece must fill its part of the line: a separator, the end, a sentence end or (for a
        # city's name) the lowercase words of the sentence going on ("..., London please") follows.
        nxt = toks[k] if k < len(toks) else None
        running = words > 0 and nxt is not None and nxt.kind == "word" and nxt.text.islower()
        if nxt is not None and not (nxt.kind == "nl" or nxt.text in ",.?!;:" or running):
            break
        end = k
        pieces += 1
        j = k
    return end


def find_addresses(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of each street address or post box, not overlapping, in order."""
    toks = _tokens(text)
    found: list[tuple[int, int, float]] = []

    def add(start: int, end: int, score: float) -> None:
        last = text[start:end].rsplit(None, 1)[-1].rstrip(".").casefold()
        if text[end - 1] == "." and len(last) > 3:
            end -= 1  # the sentence's full stop, not an abbreviation's
        if score >= ACCEPT and all(end <= a or start >= b for a, b, _ in found):
            found.append((start, end, score))

    for m in _POSTBOX.finditer(text):
        k = next((i for i, t in enumerate(toks) if t.start >= m.end()), len(toks))
        end = _continuation(text, toks, k)
        add(m.start(), toks[end - 1].end if end > k else m.end(), 0.9)

    i = 0
    while i < len(toks):
        tok = toks[i]
        span = None
        if tok.kind == "num" and _is_house_number(text, tok):
            span = _number_first(text, toks, i)
        elif tok.kind == "word" and (tok.capitalised or _is_before(tok)):
            span = _name_first(text, toks, i)
        if span is not None:
            start, end, score = span
            add(toks[start].start, toks[end - 1].end, score)
            i = end
        else:
            i += 1
    return sorted(found)


def _cued(text: str, start: int) -> bool:
    return _CUE.search(text[max(0, start - 50) : start]) is not None


def _number_first(text: str, toks: list[_Tok], i: int) -> tuple[int, int, float] | None:
    """ "14 Crown Street", "6750 Koskikatu 25 Apt. 864", "1987 74 Diakou Street" (two leading numbers)."""
    j = i + 1
    if j < len(toks) and toks[j].kind == "num" and j + 1 < len(toks) and toks[j + 1].kind == "word":
        j += 1  # "17151 2450 Crown St"
    first = j
    while j < len(toks) and j - first < 6 and toks[j].kind == "word":
        j += 1
    words = toks[first:j]
    typed = [k for k, t in enumerate(words) if _is_type(t)]
    if words and _is_before(words[0]):  # "2613 avenida praia 1", "947 trg revolucije 17"
        names = words[: next((k for k, t in enumerate(words) if t.key in _STOP), len(words))][:4]
        typed = [0]
    elif typed:  # up to the last street type: "14 Crown Street Kishiev Squares"
        names = words[: typed[-1] + 1]
    else:
        names = []
        for t in words:
            if not (t.capitalised or t.key in _PARTICLES):
                break
            names.append(t)
        after = first + len(words)
        lowercase_street = 1 <= len(words) <= 3 and after + 1 < len(toks) and toks[after].kind == "num"
        if not names and lowercase_street and _is_type(toks[after + 1]):  # "74678 midtvollen 130 st."
            names = words
    j = first + len(names)
    while names and names[-1].key in _PARTICLES:  # "... Crown Street and" ends before "and"
        names.pop()
        j -= 1
    if not names or names[0].key in _PARTICLES or names[0].key in _STOP or not _real_word(names):
        return None
    has_type = bool(typed)
    capitalised = all(t.capitalised or t.key in _PARTICLES or _is_type(t) for t in names) and any(
        t.capitalised for t in names
    )
    lowercase_text = not any(t.capitalised for t in names)
    second_number = j < len(toks) and toks[j].kind == "num" and len(toks[j].text) <= 5
    if second_number:
        j += 1
        if j < len(toks) and _is_type(toks[j]):  # "74678 midtvollen 130 st."
            has_type = True
            j += 1
    elif has_type and j < len(toks) and toks[j].kind == "word" and toks[j].key in _DIRECTIONS:
        j += 1  # "Pennsylvania Avenue NW"
    after_unit = _unit(toks, j)
    unit = after_unit > j
    end = _continuation(text, toks, after_unit)
    continued = end > after_unit
    cue = _cued(text, toks[i].start)
    weak = has_type and all(t.key in _WEAK for t in names if _is_type(t))
    if has_type and (capitalised or second_number or cue) and not (weak and not (second_number or cue)):
        score = 0.9
    elif (has_type and capitalised and (unit or continued)) or (
        second_number and (capitalised or (lowercase_text and (unit or cue))) and (unit or cue or continued)
    ):
        score = 0.85
    elif capitalised and (unit or (cue and continued)):
        score = 0.8
    elif capitalised and cue and len(names) <= 4:
        score = 0.7
    else:
        return None
    return i, end, score


def _name_first(text: str, toks: list[_Tok], i: int) -> tuple[int, int, float] | None:
    """ "Via Franscini 71", "Brucker Bundesstrasse 31", "Erzsébet tér 19.", "Király u. 15"."""
    if toks[i].key in _STOP or toks[i].key in _PARTICLES:
        return None
    j = i + 1
    if j < len(toks) and toks[j].text == "." and toks[i].key in _LOWER_BEFORE:
        j += 1  # "ul ." when the dot was not part of the word
    before = _is_before(toks[i])
    while j < len(toks) and j - i < 5 and (_name_word(toks[j]) or (before and toks[j].kind == "word")):
        j += 1
    names = toks[i:j]
    if not names or j >= len(toks) or toks[j].kind != "num" or not _is_house_number(text, toks[j]):
        return None
    if len(toks[j].text) > 4:
        return None
    last = names[-1]
    typed = before or last.key in _AFTER_OTHER or (last.key in _LOWER_ONLY and _is_type(last))
    typed = typed or _is_compound(last.key) or last.text == "u."
    if not typed or not _real_word(names):
        return None
    end = _unit(toks, j + 1)
    end = _continuation(text, toks, end)
    return i, end, 0.85
