"""A first prompt-injection / jailbreak detector: weighted patterns over normalised text.

Each pattern names a *technique* (overriding earlier instructions, asking for the system prompt,
role-play as an unrestricted persona, chat-template delimiters, encoded payloads, ...), not a known
attack text, so that rewordings of an attack still match. The score is a noisy-OR over the techniques
found, each counted once: `1 - prod(1 - weight)`. One strong signal ("ignore all previous
instructions", 0.9) is enough; weak ones ("pretend to be", "without restrictions") only add up when
several appear together, as they do in a jailbreak preamble, and stay below the threshold on their own
in an ordinary question ("How do I jailbreak my phone?", "Play the role of a tutor").

A pattern list is a first line, not the last: it misses novel phrasings and paraphrases in languages
it has no patterns for. A learned classifier can be added behind `ports.InputCheck` later.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragbus.shields.normalize import Views, views

_F = re.IGNORECASE | re.MULTILINE

try:
    # RE2 matches these ~50 alternation-heavy patterns with a DFA: 0.2 ms for a 300-token prompt where
    # Python's backtracking `re` takes 3.4 ms (bench/guard_eval.py). Same results on the 15,589 texts of
    # the reference data (tests/test_injection_engine.py checks both engines on the adversarial cases);
    # without the wheel, `re` alone.
    import re2 as _re2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the wheel is a dependency; a platform without one still works
    _re2 = None
ENGINE = "re" if _re2 is None else "re2"  # what the patterns run on


@dataclass(frozen=True, slots=True)
class Pattern:
    technique: str
    weight: float
    regex: re.Pattern[str]
    view: str = "folded"  # which normalised view it matches: plain, folded or squashed
    fast: Any = field(default=None, compare=False, repr=False)  # the same pattern under RE2, if it compiles

    def search(self, text: str) -> bool:
        return (self.fast or self.regex).search(text) is not None


def _fast(regex: str) -> Any:
    if _re2 is None:
        return None
    try:
        return _re2.compile("(?im)" + regex)  # the flags of `_F`, inline
    except Exception:  # noqa: BLE001 - a construct RE2 lacks (backreference, lookaround): `re` serves it
        return None


def _p(technique: str, weight: float, regex: str, view: str = "folded") -> Pattern:
    return Pattern(technique, weight, re.compile(regex, _F), view, _fast(regex))


# Reusable pieces. `_W` is a run of non-word characters between words; `_ANY(n)` skips up to n words.
_W = r"[\W_]+"
_W0 = r"[\W_]*"


def _any(n: int) -> str:
    return rf"(?:\w+{_W}){{0,{n}}}?"


_OVERRIDE_VERB = r"(?:ignore|disregard|forget|bypass|override|overlook|discard|abandon|set aside|skip|drop)"
# "Override the default rules" and "override the system prompt" are everyday developer questions, so
# neither "default" nor "system" marks earlier instructions here; "ignore your system prompt" still
# matches through "your".
_EARLIER = r"(?:previous|previously|prior|above|earlier|preceding|foregoing|former|initial|original)"
_DIRECTIVES_CORE = (
    r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|guardrails|programming)"
)
_DIRECTIVES = rf"(?:{_DIRECTIVES_CORE}|commands?|guidance|constraints|restrictions|policies|training|context)"
_PROMPT_QUALIFIER = (
    r"(?:system|initial|original|hidden|secret|internal|previous|preceding|above|full|exact|developer|first"
    r"|confidential|pre[\W_]*prompt)"
)
_PROMPT_NOUN = r"(?:prompts?|instructions|directives|configuration|rules|messages?)"
_FILLER = rf"(?:(?:all|any|every|each|the|your|my|of|these|those|that|this|and|or|following|other){_W})"

PATTERNS: tuple[Pattern, ...] = (
    # --- overriding earlier instructions -----------------------------------------------------------
    _p(
        "instruction_override",
        0.9,
        rf"\b{_OVERRIDE_VERB}{_W}{_FILLER}{{0,5}}(?:{_EARLIER}{_W}{_FILLER}{{0,3}}{_DIRECTIVES}|(?:all|any"
        rf"|your){_W}{_FILLER}{{0,2}}{_DIRECTIVES_CORE})\b",
    ),
    _p(
        "instruction_override",
        0.9,
        rf"(?:ignore|disregard|forget|bypass|override)(?:all|any|the|your|of)*{_EARLIER}(?:and|or|following)*"
        rf"(?:instructions?|directions|directives|prompts?|rules|guidelines)",
        view="squashed",
    ),
    _p(
        "forget_everything",
        0.8,
        rf"\b(?:ignore|disregard|forget){_W}(?:about{_W})?(?:everything|all(?:{_W}of)?{_W}(?:that|this|it)"
        rf"|what{_W}you(?:{_W}were|{_W}have{_W}been){_W}told){_W}{_any(4)}(?:before|above|previously"
        rf"|so far|until now|up to now|earlier|prior|in your training)\b",
    ),
    _p(
        "disregard_above",
        0.6,
        rf"\b(?:ignore|disregard|forget){_W}(?:all{_W})?(?:of{_W})?(?:the|that|this)"
        rf"{_W}(?:above|foregoing|preceding)\b",
    ),
    _p(
        "new_instructions",
        0.5,
        rf"\b(?:new|updated|real|actual|true|secret|hidden|revised){_W}"
        rf"(?:system{_W})?(?:instructions|prompt|rules|directives|task|orders)\b\s*[:\-]",
    ),
    _p(
        "new_instructions",
        0.5,
        rf"\byour{_W}(?:new|real|true|actual|only){_W}(?:task|job|purpose|goal"
        rf"|instructions|role|mission|objective){_W}(?:is|are|will{_W}be)\b|\byour{_W}(?:\w+{_W})?(?:task|"
        rf"job|purpose|goal|role|mission|objective){_W}(?:is|are){_W}now\b",
    ),
    _p(
        "response_prefix",
        0.3,
        rf"\b(?:prefix|start|begin){_W}(?:all{_W}|each{_W}|every{_W})?(?:of{_W})?"
        rf"your{_W}(?:responses|answers|replies|messages|outputs){_W}with\b",
    ),
    _p(
        "from_now_on",
        0.45,
        rf"\b(?:from{_W}(?:now|here|this{_W}point){_W}(?:on|onwards?|forward)|starting"
        rf"{_W}now|henceforth|for{_W}the{_W}rest{_W}of{_W}this{_W}conversation){_W}{_any(3)}you{_W}(?:are|will|must|should|shall|have{_W}to|act"
        rf"|respond|answer|reply|can|need)\b",
    ),
    # --- prompt extraction -------------------------------------------------------------------------
    # "your ... prompt" is asked of the model; "the system prompt" only with an imperative ("print the
    # hidden instructions"), since "what is the system prompt of an LLM?" is a fair question.
    _p(
        "prompt_extraction",
        0.7,
        rf"\b(?:print|show|reveal|repeat|output|display|tell|give|write|leak|dump|expose|share|recite|list"
        rf"|paste|copy|spell{_W}out){_W}{_any(3)}your{_W}(?:{_PROMPT_QUALIFIER}{_W})*{_PROMPT_NOUN}\b",
    ),
    _p(
        "prompt_extraction",
        0.7,
        rf"\bwhat(?:{_W}s|{_W}is|{_W}are|{_W}were){_W}{_any(2)}your{_W}(?:(?:{_PROMPT_QUALIFIER}{_W})+"
        rf"{_PROMPT_NOUN}|(?:{_PROMPT_QUALIFIER}{_W})*prompts?)\b",
    ),
    _p(
        "prompt_extraction",
        0.7,
        rf"\b(?:print|show|reveal|repeat|output|display|tell|give|write|leak|dump|expose|share|recite|paste"
        rf"|copy|spell{_W}out){_W}(?:me{_W}|us{_W})?(?:the|all{_W}(?:of{_W})?the){_W}(?:(?:system|hidden"
        rf"|secret|internal|initial|developer|confidential|pre{_W0}prompt){_W})+{_PROMPT_NOUN}\b",
    ),
    _p(
        "prompt_extraction",
        0.7,
        r"(?:reveal|print|show|repeat|output|display|leak|dump)(?:me|us)?(?:your"
        r"(?:system|initial|hidden|secret|original)?|the(?:system|hidden|secret))(?:prompt|instructions)",
        view="squashed",
    ),
    _p("system_prompt_mention", 0.35, rf"\b(?:system|initial|hidden|secret){_W}prompt\b|\byour{_W}prompt\b"),
    _p(
        "repeat_above",
        0.55,
        rf"\b(?:repeat|print|output|copy|recite|echo){_W}{_any(2)}(?:words|text|"
        rf"everything|lines|content){_W}(?:above|before{_W}this|so{_W}far)\b|\b(?:verbatim|word{_W}for"
        rf"{_W}word){_W}{_any(3)}(?:above|instructions|prompt)\b",
    ),
    # --- persona / role-play jailbreaks ------------------------------------------------------------
    # "I can't do anything now" is innocent; the persona's name (quoted, or "stands for ...") is not.
    _p(
        "do_anything_now",
        0.9,
        r"(?:stands\W+for|named|called|known\W+as|short\W+for)\W*[\"“'‘]?\s*do\W+"
        r"anything\W+now\b|[\"“'‘]\s*do\W+anything\W+now\W*[\"”'’]",
    ),
    _p("do_anything_now", 0.9, r"(?:standsfor|named|called|knownas)doanythingnow", view="squashed"),
    _p("do_anything_now_words", 0.3, r"\bdo\W+anything\W+now\b"),
    _p(
        "jailbreak_mode",
        0.6,
        rf"\b(?:dan|dude|stan|jailbroken|jailbreak|unfiltered|uncensored|unrestricted"
        rf"|evil|chaos|opposite|unlocked){_W}mode\b",
    ),
    _p(
        "developer_mode",
        0.35,
        rf"\b(?:developer|dev|debug|god|admin|sudo|maintenance){_W}mode{_W}"
        rf"(?:enabled|activated|on|output|is{_W}(?:now{_W})?(?:on|enabled|active))\b",
    ),
    _p(
        "role_play",
        0.35,
        rf"\b(?:you{_W}are{_W}going{_W}to|you{_W}will|you{_W}must|i{_W}want{_W}you{_W}to"
        rf"|you{_W}have{_W}to|you{_W}are{_W}about{_W}to|you{_W}re{_W}going{_W}to){_W}(?:now{_W})?(?:act"
        rf"|take{_W}on{_W}the{_W}(?:role|persona)|assume{_W}the{_W}(?:role|persona)|pretend|play|roleplay|role{_W}play|simulate|emulate|immerse|become|impersonate|be{_W}(?:a|an)?"
        rf"{_W0}(?:ai|bot|model|assistant))\b",
    ),
    _p(
        "role_play",
        0.35,
        rf"\b(?:immerse{_W}yourself|play{_W}the{_W}role|assume{_W}the{_W}(?:role|persona)"
        rf"|take{_W}on{_W}the{_W}(?:role|persona)){_W}{_any(4)}(?:ai|model|bot|assistant|chatbot|persona|"
        rf"character|entity)\b",
    ),
    _p("pretend", 0.25, rf"\bpretend{_W}(?:to{_W}be|you{_W}are|that{_W}you)\b"),
    _p(
        "persona_tag",
        0.4,
        r"\[(?:gpt|chatgpt|dan|jailbreak|jailbroken|classic|normal|developer[\w ]*|"
        r"unfiltered|evil|[🔒🔓][^\]]{0,20})\]\s*:?",
    ),
    _p(
        "broke_free",
        0.55,
        rf"\b(?:broken|break|broke|breaking|freed|free){_W}{_any(2)}(?:free{_W})?(?:of|"
        rf"from){_W}{_any(2)}(?:confines|restrictions|limitations|rules|shackles|chains|constraints|"
        rf"censorship|guidelines)\b",
    ),
    _p(
        "no_rules",
        0.35,
        rf"\b(?:do(?:es)?{_W}not|don{_W0}t|doesn{_W0}t|never|no{_W}longer|not)"
        rf"{_W}{_any(2)}(?:abide|comply|adhere|follow|obey|bound|restricted|limited|censor)\w*{_W}{_any(3)}"
        rf"(?:rules|policies|policy|guidelines|restrictions|filters|principles|ethics|morals|censorship"
        rf"|limitations)\b",
    ),
    _p(
        "unrestricted",
        0.2,
        rf"\b(?:without|no|free{_W}of|free{_W}from|any){_W}{_any(2)}(?:restrictions?|"
        rf"censorship|censoring|filters?|filtering|limitations|morals|ethics|ethical{_W}guidelines)\b"
        rf"|\b(?:unfiltered|uncensored|unrestricted|amoral)\b",
    ),
    _p(
        "policy_talk",
        0.2,
        rf"\b(?:content|usage|safety|openai{_W0}s?|ethical){_W}(?:polic(?:y|ies)|"
        rf"guidelines|filters?)\b",
    ),
    _p(
        "unrestricted_answers",
        0.45,
        rf"\b(?:answer|respond|reply|speak|talk|operate|act|write)\w*{_W}"
        rf"{_any(2)}(?:without|with{_W}no|free{_W}of|free{_W}from){_W}{_any(2)}(?:restrictions|filters|limits"
        rf"|limitations|censorship|rules|guidelines|boundaries)\b",
    ),
    _p(
        "disable_safety",
        0.4,
        rf"\b(?:override|bypass|disable|turn{_W}off|deactivate|circumvent|evade|"
        rf"switch{_W}off){_W}{_any(2)}(?:safety|safeguards?|guardrails|filters?|moderation|restrictions|"
        rf"censorship|alignment|ethics)\b",
    ),
    _p(
        "stay_in_character",
        0.35,
        rf"\b(?:stay|remain|keep|break(?:ing)?|broke){_W}(?:in|out{_W}of)"
        rf"{_W}character\b",
    ),
    _p(
        "dual_response",
        0.25,
        rf"\b(?:two|2){_W}(?:different{_W}|separate{_W}|distinct{_W})*(?:ways|"
        rf"responses|answers|paragraphs|outputs)\b",
    ),
    _p("jailbreak_word", 0.35, r"\bjailbr(?:eak|oken|eaking)\w*\b"),
    # --- hijacking the output ----------------------------------------------------------------------
    _p(
        "forced_output",
        0.4,
        rf"\b(?:just|only|simply|instead){_W}(?:say|print|output|write|repeat|type|"
        rf"respond{_W}with|reply{_W}with|answer{_W}with|return)\s*[:\-]?\s*[\"“”'«`]",
    ),
    _p(
        "stop_everything",
        0.35,
        rf"\bstop{_W}(?:everything|what{_W}you{_W}are{_W}doing|all{_W}"
        rf"(?:tasks|processing))\b",
    ),
    _p(
        "nevermind",
        0.2,
        rf"^\W*(?:never{_W0}mind|nvm|scratch{_W}that|actually{_W}no)\b|\.\.\.{_W0}"
        rf"never{_W0}mind\b",
    ),
    # --- delimiters of chat templates and fake turns -----------------------------------------------
    _p(
        "chat_delimiter",
        0.7,
        r"<\|?\s*(?:im_start|im_end|system|endoftext|eot_id|start_header_id|"
        r"end_header_id|begin_of_text)\s*\|?>",
        view="plain",
    ),
    _p("chat_delimiter", 0.6, r"\[/?(?:inst|sys|system)\]|<<\s*/?sys\s*>>", view="plain"),
    _p(
        "fake_turn",
        0.45,
        r"(?:^|[.!?]\s)\s*(?:#{1,6}\s*|\*\*|\[)?(?:system|assistant|developer|admin|root)"
        r"(?:\s+(?:message|prompt|override|instructions?))?\s*(?:\*\*|\])?\s*:",
        view="plain",
    ),
    _p("fake_turn", 0.5, r"^\s*#{2,}\s*(?:new\s+)?(?:instructions?|system|admin|override)\b", view="plain"),
    _p(
        "boundary_marker",
        0.4,
        rf"(?:-{{3,}}|={{3,}}|#{{3,}}|\*{{3,}}|<{{2,}}|>{{2,}})\s*(?:end|begin|start)"
        rf"{_W}(?:of{_W})?(?:the{_W})?(?:system|prompt|instructions|user|context|document|input)",
        view="plain",
    ),
    # --- encoded payloads --------------------------------------------------------------------------
    _p(
        "encoded_payload",
        0.3,
        rf"\b(?:decode|decrypt|translate|convert|interpret|deobfuscate|unscramble)"
        rf"{_W}{_any(4)}(?:base{_W0}64|b64|rot{_W0}13|hex(?:adecimal)?|binary|morse|caesar|leetspeak|"
        rf"reversed|backwards)\b",
    ),
    _p(
        "execute_payload",
        0.3,
        rf"\b(?:and|then){_W}(?:then{_W})?(?:follow|execute|obey|carry{_W}out|"
        rf"act{_W}on|comply{_W}with|do{_W}what){_W}(?:it|them|that|those|the{_W}(?:decoded|resulting|hidden"
        rf"|embedded)|it{_W}says|the{_W}instructions?)\b",
    ),
    # --- other languages: the override phrase, addressed to the model ("all", "your", "previous") ---
    _p(
        "instruction_override",
        0.8,
        r"\b(?:ignorier\w*|vergiss|vergesse\w*|missachte\w*)\W+(?:\w+\W+){0,2}?"
        r"(?:alle|deine|ihre|vorherige|bisherige|obige|vorige|vorangegangene|frühere)\w*\W+(?:\w+\W+){0,2}?"
        r"(?:anweisungen|anweisung|befehle|regeln|instruktionen|vorgaben)\b",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"\b(?:ignore[rz]?|oublie[rz]?|ne\W+tiens?\W+pas\W+compte\W+de)\W+"
        r"(?:(?:(?:toutes|tous)\W+(?:les|tes|vos)|tes|vos)\W+(?:\w+\W+)?(?:instructions|consignes|règles|"
        r"directives)|(?:les|des)\W+(?:instructions|consignes|règles|directives)\W+(?:précédentes|"
        r"antérieures|ci-dessus|initiales|d'avant))\b",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"\b(?:ignora|ignore|ignoren|olvida|olvide|omite|descarta)\W+"
        r"(?:(?:(?:todas|todos)\W+(?:las|los|tus|sus)|tus|sus)\W+(?:\w+\W+)?(?:instrucciones|indicaciones|"
        r"reglas|órdenes|directrices)|(?:las|los)\W+(?:instrucciones|indicaciones|reglas|órdenes)\W+"
        r"(?:anteriores|previas|iniciales))\b",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"\b(?:ignora|dimentica|ignorate|dimenticate)\W+(?:(?:tutte\W+le|le\W+tue"
        r"|tue)\W+(?:\w+\W+)?(?:istruzioni|regole|indicazioni)|le\W+(?:istruzioni|regole|indicazioni)\W+"
        r"(?:precedenti|iniziali))\b",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"\b(?:ignore|ignora|esqueça|esqueca|desconsidere)\W+(?:(?:todas\W+as"
        r"|suas)\W+(?:\w+\W+)?(?:instruções|instrucoes|regras|orientações)|as\W+(?:instruções|instrucoes|"
        r"regras)\W+(?:anteriores|iniciais))\b",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"(?:игнорируй|проигнорируй|забудь|не\W+обращай\W+внимания\W+на)\w*\W+"
        r"(?:\w+\W+){0,2}?(?:все|предыдущи|прошл|свои|твои|ваши|прежни)\w*\W+(?:\w+\W+){0,2}?"
        r"(?:инструкци|указани|правил|команд)",
        view="plain",
    ),
    _p(
        "instruction_override",
        0.8,
        r"(?:忽略|无视|忘记|忽视|忘掉)(?:之前|以前|上面|上述|先前|前面|所有|全部)"
        r"的?(?:所有|全部)?(?:指令|指示|说明|规则|提示)",
        view="plain",
    ),
)

# Base64 runs long enough to hide a sentence; decoded and checked once (no deeper recursion).
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{4}){6,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HIDDEN_PAYLOAD_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    techniques: tuple[str, ...]  # what was found, sorted; never the matched text


def _decoded_payloads(text: str) -> list[str]:
    out: list[str] = []
    for match in _BASE64.finditer(text):
        try:
            raw = base64.b64decode(match.group(0), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        # A random identifier rarely decodes to mostly printable words.
        if sum(ch.isalpha() or ch == " " for ch in decoded) >= 0.8 * len(decoded) and " " in decoded:
            out.append(decoded)
    return out


def _match_each(v: Views, patterns: Iterable[Pattern]) -> dict[str, float]:
    """Per technique, the highest weight of the patterns that match: pattern by pattern."""
    found: dict[str, float] = {}
    for pat in patterns:
        if pat.weight <= found.get(pat.technique, 0.0):
            continue
        if pat.search(getattr(v, pat.view)):
            found[pat.technique] = pat.weight
    return found


class _SetMatcher:
    """The patterns that run under RE2, as one RE2::Set per view: one pass over a view tells which of
    its patterns match, where running them one by one took ~50 passes. Most texts (every chunk of every
    document ingest scans, most prompts) match none, and the scan of a SciFact abstract spent half its
    time in these searches. The rest (a pattern RE2 cannot compile) still run one by one."""

    def __init__(self, patterns: tuple[Pattern, ...]) -> None:
        assert _re2 is not None
        self.patterns = patterns
        self.sets: list[tuple[str, Any, list[Pattern]]] = []
        by_view: dict[str, list[Pattern]] = {}
        for pat in patterns:
            if pat.fast is not None:
                by_view.setdefault(pat.view, []).append(pat)
        for view, pats in by_view.items():
            regexes = _re2.Set.SearchSet()
            for pat in pats:
                regexes.Add("(?im)" + pat.regex.pattern)  # as `_fast` compiles it
            regexes.Compile()
            self.sets.append((view, regexes, pats))
        self.rest = [pat for pat in patterns if pat.fast is None]

    def match(self, v: Views) -> dict[str, float]:
        hits = [pats[i] for view, regexes, pats in self.sets for i in regexes.Match(getattr(v, view)) or ()]
        return _match_each(v, [*sorted(hits, key=self.patterns.index), *self.rest])


_matchers: dict[int, _SetMatcher] = {}


def _matcher(patterns: tuple[Pattern, ...]) -> _SetMatcher:
    matcher = _matchers.get(id(patterns))
    if matcher is None or matcher.patterns is not patterns:
        matcher = _matchers[id(patterns)] = _SetMatcher(patterns)
    return matcher


def _match(v: Views, patterns: tuple[Pattern, ...]) -> dict[str, float]:
    if _re2 is None:
        return _match_each(v, patterns)
    return _matcher(patterns).match(v)


def may_match(texts: Sequence[Views], patterns: tuple[Pattern, ...]) -> bool:
    """Whether any of `patterns` may match the views of any of `texts`: one pass per view over the texts'
    views joined by line breaks, where matching each text took one per view and text. Never False where
    one text's own views match (a match inside one text is a match of the joined string: the patterns
    run under RE2, which has no lookaround or backreference, and with `(?m)` a line break reads as the
    start or end of a text to `^`, `$` and `\b`); may be True where only a match across two texts is.
    Without RE2 (or with a pattern it cannot compile) it answers True: check each text."""
    if _re2 is None or any(pat.fast is None for pat in patterns):
        return True
    return any(
        regexes.Match("\n".join(getattr(v, view) for v in texts))
        for view, regexes, _ in _matcher(patterns).sets
    )


def may_hide_payload(texts: Sequence[str]) -> bool:
    """Whether any of `texts` holds a run that `score_injection` would try to decode: the run cannot
    hold a line break, so one search of the texts joined by line breaks finds each text's runs."""
    return _BASE64.search("\n".join(texts)) is not None


def score_injection(
    text: str, *, patterns: tuple[Pattern, ...] = PATTERNS, text_views: Views | None = None
) -> InjectionResult:
    """`text_views`: `views(text)`, where the caller has them already."""
    found = _match(views(text) if text_views is None else text_views, patterns)
    for payload in _decoded_payloads(text):
        hidden = _match(views(payload), patterns)
        if hidden:
            found["hidden_payload"] = _HIDDEN_PAYLOAD_WEIGHT
            for technique, weight in hidden.items():
                found[technique] = max(found.get(technique, 0.0), weight)
    remaining = 1.0
    for weight in found.values():
        remaining *= 1.0 - weight
    return InjectionResult(score=round(1.0 - remaining, 4), techniques=tuple(sorted(found)))
