"""Text that reaches HTML, escaped where it is written: markdown rendered with raw HTML escaped, tables built from
escaped cells, TeX handed to MathJax only when every macro in it is on a list of plain maths macros.

Anything a run folder holds (config strings, model folder names, model output) is untrusted: a shared or committed
run folder must never run script in its reader's browser, nor reach MathJax's `\\href`, `\\class`, `\\style` or
`\\require`. Generated text is wrapped in `NO_MATH` so MathJax does not scan it at all; only `math` emits TeX.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable

import pandas as pd

# MathJax 2 and 3 skip an element with either class (and everything inside it)
NO_MATH = "tex2jax_ignore mathjax_ignore"

# The macros model output and gold answers use; anything else (\href, \class, \style, \cssId, \require, \unicode,
# \def, \html..., \data...) is shown as text, never typeset.
SAFE_MACROS = frozenset("""
boxed frac dfrac tfrac sqrt cdot times div pm mp le leq ge geq ne neq approx equiv sim lt gt
left right big Big bigl bigr Bigl Bigr mid vert Vert langle rangle lfloor rfloor lceil rceil
pi theta alpha beta gamma delta epsilon varepsilon zeta eta iota kappa lambda mu nu xi rho sigma tau upsilon phi
varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega infty infin circ degree prime
sin cos tan cot sec csc arcsin arccos arctan log ln exp lim sum prod int min max gcd lcm mod bmod pmod binom dbinom
text textbf textit mathrm mathbf mathit mathbb mathcal operatorname quad qquad ldots cdots dots vdots ddots
overline underline hat bar vec dot ddot tilde widehat widetilde in notin subset subseteq cup cap setminus emptyset
varnothing forall exists neg land lor to rightarrow leftarrow Rightarrow Leftrightarrow implies iff angle triangle
parallel perp cong propto partial nabla begin end pmatrix bmatrix matrix cases array displaystyle not
""".split())
_MACRO = re.compile(r"\\([A-Za-z]+)")
_ENVS = frozenset({"pmatrix", "bmatrix", "matrix", "cases", "array", "aligned", "align", "align*"})
# $$...$$, $...$, \[...\], \(...\): the delimiters model output uses
_MATH_SPANS = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.S)
MAX_TEX = 400  # longer TeX is shown as text: MathJax on 100k characters of hostile output stalls the page


def esc(value: object) -> str:
    """A value as HTML text (quotes too: the result may sit in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def tex_is_safe(tex: str) -> bool:
    """Whether MathJax may typeset `tex`: short, no markup or quotes, every macro on `SAFE_MACROS`, every environment
    a plain one."""
    if len(tex) > MAX_TEX or any(ch in tex for ch in '\x00<>"`'):  # markup and quotes: never maths an answer needs
        return False
    if not all(m in SAFE_MACROS for m in _MACRO.findall(tex)):
        return False
    return all(env in _ENVS for env in re.findall(r"\\(?:begin|end)\{([^}]*)\}", tex))


def math(tex: object, display: bool = False) -> str:
    """TeX for MathJax between `\\(`..`\\)`, HTML-escaped, where `tex_is_safe`; else the text as code (not typeset)."""
    s = "" if tex is None or (isinstance(tex, float) and pd.isna(tex)) else str(tex)
    if not s:
        return "<i>none</i>"
    if tex_is_safe(s):
        return (r"\[" if display else r"\(") + esc(s) + (r"\]" if display else r"\)")
    return f'<code class="{NO_MATH}">{esc(s)}</code>'


def text_with_math(text: object) -> str:
    """Model output as HTML: its text escaped and kept from MathJax, its `$...$`-style spans typeset where safe
    (unsafe ones stay text). Line breaks are kept by the caller's `white-space: pre-wrap`."""
    s = "" if text is None else str(text)
    out, at = [], 0
    for m in _MATH_SPANS.finditer(s):
        out.append(_plain(s[at:m.start()]))
        tex = next(g for g in m.groups() if g is not None)
        out.append(math(tex, display=m.group(1) is not None or m.group(3) is not None) if tex_is_safe(tex)
                   else _plain(m.group(0)))
        at = m.end()
    out.append(_plain(s[at:]))
    return "".join(out)


def _plain(s: str) -> str:
    return f'<span class="{NO_MATH}">{esc(s)}</span>' if s else ""


def markdown(md: str) -> str:
    """Markdown (pipe tables included) as HTML with any raw HTML in it escaped and unsafe link targets dropped,
    wrapped so MathJax leaves it alone."""
    import mistune

    render = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])
    return f'<div class="{NO_MATH} rlvr-md">{render(md)}</div>'


def table(df: pd.DataFrame, caption: str = "", formats: dict[str, Callable[[object], str] | str] | None = None,
          notes: str = "", wrap: Iterable[str] = (), pre: Iterable[str] = ()) -> str:
    """A frame as an HTML table for people: no index, escaped cells, a caption above and notes below; `formats`
    per column (a format spec such as '.3f', or a function), `wrap`: columns whose long text may wrap, `pre`: columns
    whose line breaks are kept."""
    if df is None or df.empty:
        return ""
    formats = formats or {}
    attr = {c: " class=wrap" for c in wrap} | {c: ' style="white-space:pre-wrap;text-align:left"' for c in pre}

    def cell(col: str, v: object) -> str:
        f = formats.get(col)
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if callable(f):
            return f(v)
        if f and isinstance(v, (int, float)):
            return format(v, f)
        return str(v)

    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f'<td{attr.get(c, "")}>{esc(cell(c, v))}</td>'
                                    for c, v in zip(df.columns, r)) + "</tr>" for r in df.itertuples(index=False))
    cap = f'<p class="rlvr-cap">{esc(caption)}</p>' if caption else ""  # not <caption>: that wraps to the table's width
    note = f'<p class="rlvr-note">{esc(notes)}</p>' if notes else ""
    body = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="{NO_MATH} rlvr-table">{cap}{body}{note}</div>'


def details(summary: str, body_html: str, open_: bool = False) -> str:
    """A collapsed section (`<details>`): `summary` is text (escaped), `body_html` already HTML."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body_html}</details>" if body_html else ""


def mpl_text(s: object) -> str:
    """A label for matplotlib: its mathtext would parse `$...$` in config text (and fail on hostile TeX)."""
    return str(s).replace("$", r"\$")
