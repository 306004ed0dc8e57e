"""LaTeX text escaping shared by every LaTeX export (result tables, agreement reports)."""

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text) -> str:
    """``str(text)`` with LaTeX's ten special characters escaped, safe inside a tabular cell."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))
