"""Kaggle's Text Normalization Challenge (English), generated offline the way Kaggle's
own data was made: written sentences, every token normalised to its spoken form by
rules.

Sentences are the prose of the Python standard library's help text
(`pydoc_data.topics`, shipped with every Python). Into each, semiotic tokens of
Kaggle's 16 classes are inserted with a few words of the context that tells
them apart (a bare "1999" after "in" is a DATE, after "exactly" a CARDINAL);
`RULES` normalises each class, with `num2words` for numbers, ordinals and
years, spelled in Kaggle's style: no "and" or commas ("one thousand two hundred
thirty four"), letters and electronic addresses spelled letter by letter, "o"
for a zero inside a time or a telephone number, "sil" between telephone groups.

Files (Kaggle's names and columns): `en_train.csv` (sentence_id, token_id,
class, before, after), `en_test_2.csv` (sentence_id, token_id, before),
`en_sample_submission_2.csv` (id, after; id = `<sentence_id>_<token_id>`) and
the answer key `en_test_2_solution.csv` (id, after, class) for the local score.
Deterministic for a seed.
"""

import re
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pandas as pd
from num2words import num2words

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip
UNITS = {  # symbol: (singular, plural)
    "kg": ("kilogram", "kilograms"), "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "ft": ("foot", "feet"), "mi": ("mile", "miles"), "lb": ("pound", "pounds"),
    "GB": ("gigabyte", "gigabytes"), "MB": ("megabyte", "megabytes"),
    "ms": ("millisecond", "milliseconds"), "%": ("percent", "percent"),
}  # fmt: skip
CURRENCIES = {  # symbol: (one, many, one hundredth, hundredths)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
ACRONYMS = ("API", "CPU", "HTML", "URL", "XML", "JSON", "SQL", "HTTP", "PDF", "GUI", "IDE",
            "UTF", "BBC", "FBI", "USA", "UK", "EU", "DNA", "TV", "PC", "e.g.", "i.e.")  # fmt: skip
SYMBOLS = {"&": "and", "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "π": "pi",
           "μ": "mu", "σ": "sigma", "λ": "lambda", "ω": "omega", "→": "to"}  # fmt: skip
DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PUNCT = set(".,;:!?()\"'")


# The rules ------------------------------------------------------------------
def _words(text):
    """num2words' output in Kaggle's style: no commas, hyphens or "and"; "oh" → "o"."""
    text = text.replace(",", "").replace("-", " ")
    return " ".join(w for w in text.split() if w != "and").replace("oh", "o")


def cardinal(n):
    return _words(num2words(n))


def ordinal(n):
    return _words(num2words(n, to="ordinal"))


def year(n):
    return _words(num2words(n, to="year"))


def digits(text, zero="zero"):
    return " ".join(zero if c == "0" else DIGIT_NAMES[int(c)] for c in text if c.isdigit())


def spelled(text):
    """Letters one by one, lower case ("HTML" → "h t m l")."""
    return " ".join(c.lower() for c in text if c.isalnum())


def decimal(text):
    whole, _, fraction = text.partition(".")
    return f"{cardinal(int(whole or 0))} point {digits(fraction)}"


def number(text):
    """A cardinal, or a decimal when the text has a point; commas ignored."""
    text = text.replace(",", "")
    return decimal(text) if "." in text else cardinal(int(text))


def money(text):
    one, many, cent, cents = CURRENCIES[text[0]]
    whole, _, fraction = text[1:].replace(",", "").partition(".")
    spoken = f"{cardinal(int(whole))} {one if int(whole) == 1 else many}"
    if fraction and int(fraction):
        spoken += f" {cardinal(int(fraction))} {cent if int(fraction) == 1 else cents}"
    return spoken


def measure(text):
    amount, unit = (text[:-1], "%") if text.endswith("%") else text.split(" ")
    one, many = UNITS[unit]
    return f"{number(amount)} {one if amount == '1' else many}"


def fraction(text):
    top, bottom = (int(part) for part in text.split("/"))
    one, many = DENOMINATORS.get(bottom, (ordinal(bottom), ordinal(bottom) + "s"))
    return f"{cardinal(top)} {one if top == 1 else many}"


def date(text):
    """A year ("1999"), a decade ("1990s"), "March 5, 2001", "5 March 2001" or ISO."""
    if re.fullmatch(r"\d{4}", text):
        return year(int(text))
    if re.fullmatch(r"\d{4}s", text):  # nineteen nineties
        spoken = year(int(text[:-1])).split()
        last = spoken[-1]
        plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
        return " ".join([*spoken[:-1], plural])
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
    if iso:
        y, m, d = (int(g) for g in iso.groups())
        return f"the {ordinal(d)} of {MONTHS[m - 1].lower()} {year(y)}"
    first = text.split()[0]
    if first.isdigit():  # 5 March 2001
        d, month, y = text.split()
        return f"the {ordinal(int(d))} of {month.lower()} {year(int(y))}"
    month, d, y = text.replace(",", "").split()  # March 5, 2001
    return f"{month.lower()} {ordinal(int(d))} {year(int(y))}"


def time(text):
    clock, _, half = text.partition(" ")
    hour, minute = (int(part) for part in clock.split(":"))
    spoken = cardinal(hour)
    if minute:
        spoken += f" o {cardinal(minute)}" if minute < 10 else f" {cardinal(minute)}"
    elif not half:
        spoken += " o'clock"
    return spoken + (f" {spelled(half)}" if half else "")


def telephone(text):
    return " sil ".join(digits(group, zero="o") for group in text.split("-"))


def electronic(text):
    spoken = []
    for piece in re.findall(r"[A-Za-z0-9]+|[.@/:]", text):
        names = {".": "dot", "@": "at", "/": "slash", ":": "colon"}
        spoken.append(names.get(piece) or spelled(piece))
    return " ".join(spoken)


def address(text):
    letters, _, num = text.partition("-")
    return f"{spelled(letters)} {cardinal(int(num))}"


RULES = {
    "PLAIN": lambda text: text,
    "PUNCT": lambda text: text,
    "DATE": date,
    "LETTERS": spelled,
    "CARDINAL": lambda text: ("minus " if text.startswith("-") else "") + number(text.lstrip("-")),
    "VERBATIM": lambda text: SYMBOLS[text],
    "DECIMAL": decimal,
    "MEASURE": measure,
    "MONEY": money,
    "ORDINAL": lambda text: ordinal(int(text[:-2])),
    "TIME": time,
    "ELECTRONIC": electronic,
    "DIGIT": digits,
    "FRACTION": fraction,
    "TELEPHONE": telephone,
    "ADDRESS": address,
}
CLASSES = tuple(RULES)  # Kaggle's 16 English classes, PLAIN and PUNCT first


def normalise(cls, before):
    """The spoken form of a token of class `cls`."""
    return RULES[cls](before)


# The tokens -----------------------------------------------------------------
def _suffix(n):
    if n % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def semiotic(cls, rng, words):
    """`(context before, token, context after)` of class `cls`: the words around it
    that a reader would use to tell, say, a year from a count."""
    r = rng.integers
    if cls == "DATE":
        y = int(r(1800, 2030))
        form = r(5)
        if form == 0:
            return rng.choice(["in", "since", "until"]), str(y), None
        if form == 1:
            return "the", f"{r(180, 203)}0s", None
        month, day = MONTHS[r(12)], int(r(1, 29))
        text = (f"{month} {day}, {y}", f"{day} {month} {y}", f"{y}-{r(1, 13):02d}-{day:02d}")
        return "on", text[form - 2], None
    if cls == "CARDINAL":
        n = int(r(0, 10) if r(3) == 0 else r(10, 1000) if r(2) else r(1000, 1000000))
        text = f"{n:,}" if n >= 1000 and r(2) else str(n)
        if r(6) == 0:
            text = f"-{text}"
        return rng.choice(["exactly", "about", "of", "with"]), text, rng.choice(words)
    if cls == "ORDINAL":
        n = int(r(1, 120))
        return "the", f"{n}{_suffix(n)}", rng.choice(words)
    if cls == "DECIMAL":
        text = f"{r(0, 100)}.{r(1, 1000)}"
        return rng.choice(["is", "of", "to"]), text, None
    if cls == "FRACTION":
        top, bottom = int(r(1, 9)), int(r(2, 13))
        return None, f"{top}/{bottom}", "of"
    if cls == "MONEY":
        symbol = rng.choice(list(CURRENCIES))
        text = f"{symbol}{r(1, 5000)}" + (f".{r(1, 100):02d}" if r(2) else "")
        return rng.choice(["costs", "for", "pay"]), text, None
    if cls == "MEASURE":
        unit = rng.choice(list(UNITS))
        amount = str(int(r(1, 500))) if r(3) else f"{r(0, 100)}.{r(1, 10)}"
        return None, f"{amount}%" if unit == "%" else f"{amount} {unit}", None
    if cls == "TIME":
        text = f"{r(1, 13)}:{r(0, 60):02d}" + rng.choice(["", " am", " pm"])
        return "at", text, None
    if cls == "TELEPHONE":
        text = f"{r(200, 1000)}-{r(0, 10000):04d}"
        return "call", f"1-800-{text}" if r(2) else text, None
    if cls == "DIGIT":
        return "code", "0" + "".join(str(d) for d in r(0, 10, r(2, 5))), None
    if cls == "LETTERS":
        return None, str(rng.choice(ACRONYMS)), None
    if cls == "VERBATIM":
        return None, str(rng.choice(list(SYMBOLS))), None
    if cls == "ELECTRONIC":
        a, b = rng.choice(words, 2)
        text = rng.choice([f"www.{a}.org", f"{a}@{b}.com", f"{a}.{b}.net", f"http://{a}.com"])
        return None, text.lower(), None
    if cls == "ADDRESS":
        return None, f"{rng.choice(list('ABIMU'))}-{r(1, 100)}", None
    raise ValueError(f"unknown class {cls!r}")


def sentences():
    """Prose sentences of the help text: letters, digits-free, 5–25 tokens, with their
    punctuation split off."""
    text = " ".join(topics[name] for name in sorted(topics))
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        tokens = re.findall(r"[A-Za-z]+(?:'[a-z]+)?|[.,;:!?()\"]", sentence)
        if (
            5 <= len(tokens) <= 25
            and sentence[:1].isupper()
            and not re.search(r"[\d_=<>*`]", sentence)
        ):
            found.append(tokens)
    return found


def token_class(token):
    return "PUNCT" if token in PUNCT else "PLAIN"


def token_rows(count, seed=0):
    """`count` sentences as rows (sentence_id, token_id, class, before, after), each with
    one or two semiotic tokens (and every class at least once, cycling)."""
    rng = np.random.default_rng(seed)
    prose = sentences()
    words = sorted({t.lower() for s in prose for t in s if t.isalpha() and len(t) > 3})
    special = CLASSES[2:]
    rows = []
    for sentence_id in range(count):
        tokens = [(token_class(t), t) for t in prose[rng.integers(len(prose))]]
        inserts = 1 + int(rng.integers(2))
        for k in range(inserts):
            cls = (
                special[(sentence_id * 2 + k) % len(special)]
                if rng.integers(2)
                else rng.choice(special)
            )
            left, token, right = semiotic(str(cls), rng, words)
            at = int(rng.integers(1, len(tokens)))
            piece = [("PLAIN", w) for w in (left,) if w] + [(str(cls), token)]
            piece += [("PLAIN", w) for w in (right,) if w]
            tokens[at:at] = piece
        for token_id, (cls, before) in enumerate(tokens):
            rows.append((sentence_id, token_id, cls, before, normalise(cls, before)))
    return pd.DataFrame(rows, columns=["sentence_id", "token_id", "class", "before", "after"])


def _write_csv(frame, path):
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def generate(data_dir, train=20000, test=2000, seed=0):
    """Write the competition's four files into `data_dir`: `train` and `test` sentences."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    train_rows, test_rows = token_rows(train, seed), token_rows(test, seed + 1)
    ids = test_rows["sentence_id"].astype(str) + "_" + test_rows["token_id"].astype(str)
    solution = pd.DataFrame({"id": ids, "after": test_rows["after"], "class": test_rows["class"]})
    sample = pd.DataFrame({"id": ids, "after": test_rows["before"]})
    _write_csv(solution, data_dir / "en_test_2_solution.csv")
    _write_csv(sample, data_dir / "en_sample_submission_2.csv")
    _write_csv(test_rows[["sentence_id", "token_id", "before"]], data_dir / "en_test_2.csv")
    _write_csv(train_rows, data_dir / "en_train.csv")


def prepare(data_dir):
    """`generate` the files unless `en_train.csv` is there: `generate` writes it last,
    and Kaggle's own files (which have no answer key) are never overwritten."""
    if not (Path(data_dir) / "en_train.csv").is_file():
        generate(data_dir)
