"""Plain-text analysis the grader needs besides embeddings: clauses, polarity, guards, numbers.

Sentence embeddings cannot see negation or antonyms ("bf16 does NOT share fp32's exponent" scores ~0.97
against the true statement), and they reward keyword lists and copied questions. The checks here are
deliberately simple, transparent rules that run before and after the embedding comparison.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MAX_ANSWER_CHARS = 5000

WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?(?:\.[0-9]+)?")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+|(?<=[.!?])$")
_CLAUSE_SPLIT = re.compile(
    r";|:\s|\s[-–—]\s|,?\s+(?:but|whereas|while|although|though|so that|so|because|since|which means|"
    r"which|meaning|thus|hence|therefore|and therefore|otherwise)\s+",
    re.IGNORECASE,
)

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "so",
        "as",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "done",
        "has",
        "have",
        "had",
        "having",
        "it",
        "its",
        "it's",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "them",
        "he",
        "she",
        "we",
        "you",
        "i",
        "me",
        "my",
        "our",
        "your",
        "his",
        "her",
        "not",
        "no",
        "nor",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "every",
        "both",
        "some",
        "such",
        "more",
        "most",
        "less",
        "fewer",
        "very",
        "too",
        "also",
        "only",
        "just",
        "because",
        "since",
        "while",
        "although",
        "though",
        "until",
        "unless",
        "whether",
        "same",
        "other",
        "one",
        "ones",
        "own",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "once",
        "here",
        "instead",
        "rather",
        "via",
        "per",
    ]
)

NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "neither",
        "nor",
        "cannot",
        "can't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "wouldn't",
        "shouldn't",
        "couldn't",
        "hasn't",
        "haven't",
        "hadn't",
        "without",
        "lacks",
        "lack",
        "fails",
        "fail",
        "n't",
    ]
)

# Pairs of words that flip a claim. Checked on the clause that matched a key point: if the clause uses one
# side and the rubric's phrasing the other, the clause contradicts the point instead of making it.
ANTONYMS: list[tuple[set[str], set[str]]] = [
    ({"more", "greater", "extra", "additional"}, {"fewer", "less", "lesser"}),
    (
        {"higher", "high", "raise", "raises", "raising", "raised"},
        {"lower", "low", "reduce", "reduces", "lowered"},
    ),
    (
        {"increase", "increases", "increased", "increasing", "grow", "grows"},
        {"decrease", "decreases", "decreased", "decreasing", "shrink", "shrinks"},
    ),
    (
        {"larger", "bigger", "large", "big", "wider", "wide", "longer"},
        {"smaller", "small", "tiny", "narrower", "narrow", "shorter"},
    ),
    (
        {"same", "identical", "matches", "match", "equal", "shares", "share"},
        {"different", "differs", "unlike"},
    ),
    (
        {"smooth", "smooths", "smoother", "softens", "softer", "soft", "flatter", "flattens", "flatten"},
        {"sharpen", "sharpens", "sharper", "sharp", "peakier", "peaked"},
    ),
    ({"frequent", "frequently", "common", "most"}, {"rare", "rarer", "rarely", "least", "infrequent"}),
    ({"before"}, {"after"}),
    ({"first"}, {"last", "second"}),
    (
        {"overfit", "overfitting", "memorize", "memorise", "memorizes", "memorises"},
        {"underfit", "underfitting"},
    ),
    ({"cheaper", "cheap", "faster", "fast"}, {"expensive", "costlier", "slower", "slow"}),
    ({"preserves", "preserve", "keeps", "retains"}, {"erases", "loses", "destroys", "discards"}),
    ({"removes", "eliminates", "avoids"}, {"adds", "introduces", "requires"}),
    ({"underflow", "underflows"}, {"overflow", "overflows"}),
    ({"include", "includes", "included"}, {"exclude", "excludes", "excluded", "masked", "ignored"}),
    ({"upper"}, {"lower"}),
    ({"unpaired", "binary"}, {"paired", "pairwise"}),
    ({"all"}, {"none"}),
]

DONT_KNOW = re.compile(
    r"^\W*((honestly|sorry|um+|uh+|well|hmm+|tbh|ok|okay)\W+)*(i\s+(really\s+)?(do\s*n[o']?t|dont|don’t)\s+know|no\s+idea|not\s+sure|idk|dunno|no\s+clue|"
    r"i\s+have\s+no\s+(idea|clue)|i\s+forgot|i\s+(can'?t|cannot|do\s*n[o']?t|dont)\s+(remember|recall)|pass|skip|\?+|n/?a|none)\b",
    re.IGNORECASE,
)

GRADER_INSTRUCTION = re.compile(
    r"(ignore\s+(all\s+|any\s+|the\s+|your\s+|previous\s+|prior\s+|above\s+)*(instructions?|rubric|rules|prompt)"
    r"|(give|award|assign)\s+(me\s+|this\s+(answer\s+)?)?(full|maximum|max|perfect|top|100%?)\s*(marks?|points?|score|credit|grade)"
    r"|(grade|mark|score|rate|label|treat)\s+(this|my|the)\s+(answer\s+|response\s+)?(as\s+)?(correct|right|perfect|100|10)"
    r"|(output|return|respond\s+with|say|print)\s+[\"']?(correct|verdict)"
    r"|(^|[^\w\s])\s*system(\s+prompt)?\s*:|you\s+are\s+now\s+(a|an|the)\s|as\s+the\s+grader|dear\s+grader"
    r"|note\s+to\s+(the\s+)?grader"
    r"|verdict\s*[:=]|score\s*[:=]\s*(1(\.0)?|10|100))",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def normalise_answer(raw: str) -> tuple[str, bool]:
    """Strip, collapse runs of blank space and cap the length. Returns (text, truncated)."""
    text = raw.replace("\r\n", "\n").replace("\x00", " ").strip()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ?\n[ \n]*", "\n", text)
    if len(text) > MAX_ANSWER_CHARS:
        cut = text[:MAX_ANSWER_CHARS]
        # Cut at a sentence end when one is near, so the last clause is not a fragment.
        end = max(cut.rfind(". "), cut.rfind("\n"))
        return (cut[: end + 1] if end > MAX_ANSWER_CHARS * 0.8 else cut).strip(), True
    return text, False


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_SPLIT.split(text) if p and p.strip()]
    return [p for p in parts if len(words(p)) >= 1]


def clauses(sentence: str) -> list[str]:
    parts = [p.strip(" ,;:-–—") for p in _CLAUSE_SPLIT.split(sentence) if p]
    return [p for p in parts if len(words(p)) >= 3]


@dataclass(frozen=True)
class Unit:
    """A piece of the answer compared against the rubric: a sentence, a clause, or two adjacent sentences."""

    text: str
    sentence: str  # the sentence it came from, quoted back to the learner


def answer_units(text: str, max_units: int = 60) -> list[Unit]:
    sents = sentences(text)
    units: list[Unit] = []
    seen: set[str] = set()

    def add(t: str, s: str) -> None:
        key = t.lower()
        if key not in seen and len(words(t)) >= 2:
            seen.add(key)
            units.append(Unit(t, s))

    for s in sents:
        add(s, s)
    for s in sents:
        cl = clauses(s)
        if len(cl) > 1:
            for c in cl:
                add(c, s)
    # Adjacent pairs catch a point split over two sentences ("bf16 keeps 8 exponent bits. So does fp32.").
    for a, b in itertools.pairwise(sents):
        if len(words(a)) + len(words(b)) <= 60:
            add(f"{a} {b}", f"{a} {b}")
    return units[:max_units]


_CONTRAST = frozenset(
    {"but", "while", "whereas", "unlike", "instead", "although", "though", "however", "yet"}
)


@dataclass(frozen=True)
class Polarity:
    """What the polarity check needs of a text, computed once per text."""

    words: frozenset[str]
    negated: bool  # has a negation cue
    terms: frozenset[str]  # stemmed content terms, for the lexical part of matching
    # Joins several claims ("in fp16 X, but bf16 Y", "X, so Y"): its polarity is not one thing, so it is
    # compared clause by clause (see `contradicts`).
    compound: bool
    parts: tuple[Polarity, ...] = ()  # the clauses of a compound text, when it splits into clauses
    # Terms in the scope of a negation: the next two content terms after "not", "no", "never", "n't"...
    # Scoping matters: "had not seen enough data" does not deny "models were trained on too little data".
    negated_terms: frozenset[str] = frozenset()
    # Terms before and after "than": "bf16 has a bigger range than fp16" vs "fp16 has a bigger range than bf16".
    than: tuple[frozenset[str], frozenset[str]] | None = None

    @classmethod
    def of(cls, text: str) -> Polarity:
        ws = words(text)
        cues = [i for i, w in enumerate(ws) if w in NEGATIONS or w.endswith("n't")]
        scoped: set[str] = set()
        for i in cues:
            following = [stem(w) for w in ws[i + 1 : i + 8] if w not in _LIGHT_STOP and w not in NEGATIONS]
            scoped.update(following[:_NEGATION_SCOPE])
        than = None
        if "than" in ws:
            k = ws.index("than")
            than = (frozenset(terms(" ".join(ws[:k]))), frozenset(terms(" ".join(ws[k + 1 :]))))
        cl = clauses(text)
        parts = tuple(cls.of(c) for c in cl) if len(cl) > 1 else ()
        compound = bool(frozenset(ws) & _CONTRAST) or bool(parts)
        return cls(
            frozenset(ws), bool(cues), frozenset(terms(text)), compound, parts, frozenset(scoped), than
        )


_NEGATION_SCOPE = 2


def negated(text: str) -> bool:
    return Polarity.of(text).negated


def antonym_clash(a: Polarity, b: Polarity) -> bool:
    """True when one text uses one side of an antonym pair and the other text the other side."""
    aw, bw = a.words, b.words
    for x, y in ANTONYMS:
        if (aw & x and bw & y and not aw & y and not bw & x) or (
            aw & y and bw & x and not aw & x and not bw & y
        ):
            return True
    return False


def order_flip(a: Polarity, b: Polarity) -> bool:
    """Both texts compare with "than" and name the same two things in opposite order."""
    if a.than is None or b.than is None:
        return False
    (a1, a2), (b1, b2) = a.than, b.than
    return bool((a1 & b2) - (a2 | b1)) and bool((a2 & b1) - (a1 | b2))


def _clash(a: Polarity, b: Polarity) -> bool:
    if (a.compound and not a.parts) or (b.compound and not b.parts):
        return False  # a contrast inside one clause ("unlike fp16, bf16 ..."): polarity is not one thing
    denies = bool(a.negated_terms & (b.terms - b.negated_terms)) or bool(
        b.negated_terms & (a.terms - a.negated_terms)
    )
    # An antonym and a swapped comparison cancel out: "X is larger than Y" == "Y is smaller than X".
    return denies or antonym_clash(a, b) != order_flip(a, b)


def contradicts(clause: str | Polarity, phrasing: str | Polarity) -> bool:
    """Heuristic polarity check: one text negates a term the other asserts, an antonym pair is flipped, or
    a comparison is reversed.

    Multi-clause texts are compared clause by clause: each clause of the learner's text is paired with the
    phrasing clause it shares most terms with (none shared: they talk about different things)."""
    a = clause if isinstance(clause, Polarity) else Polarity.of(clause)
    b = phrasing if isinstance(phrasing, Polarity) else Polarity.of(phrasing)
    b_atoms = b.parts or (b,)
    for x in a.parts or (a,):
        overlap, y = max(((len(x.terms & y.terms), y) for y in b_atoms), key=lambda p: p[0])
        if overlap and _clash(x, y):
            return True
    return False


# Function words that carry no claim: STOPWORDS minus the words that can carry or flip one (comparatives,
# quantifiers, negations, connectives: more, fewer, same, all, no, because...), which is exactly what
# distinguishes a claim from its opposite in the lexical part of matching.
_KEPT_AS_TERMS = frozenset(
    """about again all although any because both but done down each every fewer further having here instead
    it's less more most no nor not off once one ones only onto other out over own per rather same shall since
    some such though too under unless until up via whether while whom whose why""".split()
)
_LIGHT_STOP = STOPWORDS - _KEPT_AS_TERMS


def stem(w: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def terms(text: str) -> list[str]:
    return [stem(w) for w in words(text) if w not in _LIGHT_STOP and len(w) > 1]


def term_overlap(unit: frozenset[str], phrasing: frozenset[str], ignore: frozenset[str]) -> float:
    """Share of the phrasing's distinctive terms (those not already in the question) that the unit uses."""
    distinctive = phrasing - ignore
    return len(distinctive & unit) / len(distinctive) if distinctive else 0.0


def is_dont_know(text: str) -> bool:
    if not words(text):
        return True  # only punctuation ("?", "...")
    return len(words(text)) <= 12 and bool(DONT_KNOW.match(text.strip()))


def is_grader_instruction(text: str) -> bool:
    return bool(GRADER_INSTRUCTION.search(text))


# Frequent function words of German, French, Spanish, Italian, Portuguese and Dutch, none of them
# common English words: enough to tell "this answer is not in English" from a terse English list.
_FOREIGN_FUNCTION_WORDS = frozenset(
    """der das und ist nicht ein eine einen dem den des mit auf sich auch wird werden sind oder wenn
    wie kein keine zu im zum zur bei durch nur noch aber dass weil
    le les est une et du dans pour pas que qui sur au aux sont ce cette avec
    el los las es una por con para del lo se como más muy pero está son hay
    il di che non della delle sono gli nel una questo
    uma não das dos mais
    het een van niet zijn wordt ook voor""".split()
)


_LETTERS = re.compile(r"[^\W\d_]+")
_ACCENTED = re.compile(r"[à-öø-ÿœ]")


def looks_non_english(text: str) -> bool:
    """An answer written in another language. Its sentences have few English stopwords, so without this
    check they would be mistaken for keyword lists; the grader flags them instead (`not_english`)."""
    ws = _LETTERS.findall(text.lower())  # Unicode letters: "nötig" is one word here, not "n" + "tig"
    if len(ws) < 8:
        return False
    foreign = sum(w in _FOREIGN_FUNCTION_WORDS or bool(_ACCENTED.search(w)) for w in ws) / len(ws)
    english = sum(w in STOPWORDS for w in ws) / len(ws)
    return foreign >= 0.12 and foreign > english


def is_keyword_salad(text: str) -> bool:
    """A list of terms with no claim: almost no function words and no verb-like glue.

    Arithmetic ("15T x 4 = 60 TB") is terse but is a claim, so units with digits and operators pass."""
    ws = words(text)
    if len(ws) < 5 or re.search(r"\d\s*[x×*/=+]|[=≈]", text):
        return False
    stop = sum(1 for w in ws if w in STOPWORDS)
    return stop / len(ws) < 0.1


def word_overlap(a: str, b: str) -> float:
    """Share of a's words (function words included) that also appear in b: near 1 for a copy."""
    wa, wb = set(words(a)), set(words(b))
    return len(wa & wb) / len(wa) if wa else 0.0


def lexical_overlap(a: str, b: str) -> float:
    """Share of a's content words that also appear in b."""
    ca, cb = content_words(a), content_words(b)
    return len(ca & cb) / len(ca) if ca else 0.0


# ---------------------------------------------------------------- numbers with units

_UNIT_FACTORS = {
    # decimal bytes
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "kilobytes": 1e3,
    "megabytes": 1e6,
    "gigabytes": 1e9,
    "terabytes": 1e12,
    "petabytes": 1e15,
    "kilobyte": 1e3,
    "megabyte": 1e6,
    "gigabyte": 1e9,
    "terabyte": 1e12,
    "petabyte": 1e15,
    # binary bytes
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
_NUMBER_UNIT = re.compile(
    r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(?:x\s*10\^?(\d+)\s*)?"
    r"(kib|mib|gib|tib|pib|kb|mb|gb|tb|pb|kilobytes?|megabytes?|gigabytes?|terabytes?|petabytes?|bytes?)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Quantity:
    value: float  # in the unit it was written in
    unit: str
    text: str

    def in_unit(self, unit: str) -> float:
        return self.value * _UNIT_FACTORS[self.unit.lower()] / _UNIT_FACTORS[unit.lower()]


def quantities(text: str) -> list[Quantity]:
    out = []
    for m in _NUMBER_UNIT.finditer(text):
        value = float(m.group(1).replace(",", ""))
        if m.group(2):
            value *= 10 ** int(m.group(2))
        out.append(Quantity(value, m.group(3).lower(), m.group(0).strip()))
    return out


def known_unit(unit: str) -> bool:
    return unit.lower() in _UNIT_FACTORS
