"""LaTeX helpers: escaping, macro names, number formats and the Jinja environment of the templates.

Templates live in ``paper/templates`` (``*.tex.j2``) and use delimiters that do not clash with TeX:
blocks ``((* ... *))``, variables ``((( ... )))``, comments ``((= ... =))``. Nothing is escaped
implicitly: text goes through the explicit ``latex_escape`` filter, pre-built TeX (cells) does not.
"""
from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import jinja2

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES_DIR = REPO_ROOT / "paper" / "templates"
MISSING = "--"
NA = "n/a"  # a value that one seed cannot give (the spread across seeds, method-level intervals)
SHORT_HASH = 8

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\ensuremath{<}",
    ">": r"\ensuremath{>}",
    "|": r"\ensuremath{|}",
}
_ESCAPE_RE = re.compile("|".join(re.escape(k) for k in _ESCAPES))


def latex_escape(text: object) -> str:
    """Escape text for TeX's text mode (all ten special characters plus < > |)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], str(text))


# --------------------------------------------------------------------------- numbers and names

_ONES = ("Zero One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen "
         "Fifteen Sixteen Seventeen Eighteen Nineteen").split()
_TENS = "_ _ Twenty Thirty Forty Fifty Sixty Seventy Eighty Ninety".split()
_SCALES = ((10**9, "Billion"), (10**6, "Million"), (1000, "Thousand"), (100, "Hundred"))


def number_words(n: int) -> str:
    """12 -> 'Twelve', 105 -> 'OneHundredFive' (CamelCase, letters only: usable in TeX macro names)."""
    n = int(n)
    if n < 0:
        return "Minus" + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (_ONES[n % 10] if n % 10 else "")
    for scale, word in _SCALES:
        if n >= scale:
            rest = n % scale
            return number_words(n // scale) + word + (number_words(rest) if rest else "")
    raise AssertionError(n)


def name_part(value: object) -> str:
    """Any identifier -> letters only: 'mini_imagenet84' -> 'MiniImagenetEightyFour', 5 -> 'Five'."""
    if isinstance(value, int):
        return number_words(value)
    out = []
    for token in re.findall(r"[A-Za-z]+|[0-9]+", str(value)):
        out.append(number_words(int(token)) if token.isdigit() else token[0].upper() + token[1:].lower())
    return "".join(out)


def macro_name(*parts: object) -> str:
    name = "".join(name_part(p) for p in parts)
    if not re.fullmatch(r"[A-Za-z]+", name):
        raise ValueError(f"cannot build a TeX macro name from {parts!r}")
    return name


def pct(fraction: float) -> str:
    """Fraction -> percent with 2 decimals, rounding half up on the decimal value as written (0.87345 -> 87.35)."""
    if fraction is None or not math.isfinite(float(fraction)):
        return MISSING
    return points(Decimal(repr(float(fraction))) * 100)


def points(percent: float | Decimal) -> str:
    """A value already in percent (points) with 2 decimals, rounded half up ('--' when undefined)."""
    if percent is None or not math.isfinite(float(percent)):
        return MISSING
    value = percent if isinstance(percent, Decimal) else Decimal(repr(float(percent)))
    text = str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return "0.00" if text == "-0.00" else text


def p_value(p: float) -> str:
    """A p-value for a table: 3 significant digits, '< 0.001' below 0.001 ('--' when undefined)."""
    if p is None or not math.isfinite(float(p)):
        return MISSING
    return "$<$ 0.001" if p < 0.001 else f"{float(p):.3g}"


def or_na(text: str) -> str:
    """A formatted number, or NA where the formatter found it undefined."""
    return NA if text == MISSING else text


def num(value: float, digits: int = 3) -> str:
    """A step size etc. with `digits` significant digits ('--' when undefined)."""
    if value is None or not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):.{digits}g}"


def setting_label(dataset: str, ways: int, shots: int) -> str:
    return f"{dataset} {ways}-way {shots}-shot"


# --------------------------------------------------------------------------- Jinja

def make_env(templates_dir: Path | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir or TEMPLATES_DIR)),
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
        line_statement_prefix=None,
        line_comment_prefix=None,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["latex_escape"] = latex_escape
    return env


def render(template: str, templates_dir: Path | None = None, **context) -> str:
    return make_env(templates_dir).get_template(template).render(**context)
