"""A small document model and its two renderings: Markdown and self-contained HTML.

A :class:`Document` is a title and sections; a section holds blocks:
paragraphs, "not provided" lines, tables and figures (PNG bytes). The HTML
page inlines every figure as a ``data:image/png;base64`` URI and its style
sheet, so it opens offline, from a mail attachment or a CI artifact, with
no JavaScript; the Markdown file links the same PNGs saved beside it.
"""

import base64
import html
import os
import re

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
th.n, td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 13px; }
p.missing { color: #9a6700; background: #fff8c5; padding: 4px 8px; border-radius: 4px; }
code { background: #f6f8fa; padding: 1px 4px; border-radius: 3px; }
"""


class Section:
    """One ``##`` section: a title and blocks, added in reading order."""

    def __init__(self, title):
        self.title = title
        self.blocks = []

    def text(self, text):
        """A paragraph (``code`` in backquotes is kept as code)."""
        self.blocks.append(("text", text))
        return self

    def missing(self, text):
        """A line saying what was not provided, so the reader knows why a part is absent."""
        self.blocks.append(("missing", text))
        return self

    def table(self, header, rows):
        """A table; cells are strings (numbers should be formatted by the caller)."""
        self.blocks.append(("table", list(header), [list(map(str, r)) for r in rows]))
        return self

    def figure(self, name, png, caption):
        """A PNG figure; ``name`` is its file name stem beside the Markdown file."""
        self.blocks.append(("figure", name, png, caption))
        return self


class Document:
    """A title, an introduction line and sections; rendered by :meth:`to_markdown` /
    :meth:`to_html`.

    >>> doc = Document("Run")
    >>> doc.section("Numbers").table(["a", "b"], [["1", "2"]]) and None
    >>> print(doc.to_markdown())
    # Run
    <BLANKLINE>
    ## Numbers
    <BLANKLINE>
    | a | b |
    |---:|---:|
    | 1 | 2 |
    <BLANKLINE>
    """

    def __init__(self, title, intro=None):
        self.title, self.intro = title, intro
        self.sections = []

    def section(self, title):
        s = Section(title)
        self.sections.append(s)
        return s

    def figures(self):
        """``[(name, png)]`` of every figure, in order."""
        return [(b[1], b[2]) for s in self.sections for b in s.blocks if b[0] == "figure"]

    # -- Markdown -------------------------------------------------------------
    def to_markdown(self, figure_dir=None):
        """Markdown text; figures link ``<figure_dir>/<name>.png`` (None: figures left out)."""
        out = [f"# {self.title}", ""]
        if self.intro:
            out += [self.intro, ""]
        for s in self.sections:
            out += [f"## {s.title}", ""]
            for block in s.blocks:
                kind = block[0]
                if kind == "text":
                    out += [block[1], ""]
                elif kind == "missing":
                    out += [f"> {block[1]}", ""]
                elif kind == "table":
                    header, rows = block[1], block[2]
                    out.append("| " + " | ".join(header) + " |")
                    out.append("|" + "".join("---:|" if _numeric(rows, i) else "---|"
                                             for i in range(len(header))))
                    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                            for r in rows]
                    out.append("")
                elif figure_dir is not None:
                    out += [f"![{block[3]}]({figure_dir}/{block[1]}.png)", "", f"*{block[3]}*", ""]
        return "\n".join(out)

    # -- HTML -------------------------------------------------------------------
    def to_html(self):
        """One HTML page with its style sheet and figures inline (no URLs, no script)."""
        out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
               f"<title>{html.escape(self.title)}</title>", f"<style>{_STYLE}</style>",
               "</head>", "<body>", f"<h1>{html.escape(self.title)}</h1>"]
        if self.intro:
            out.append(f"<p>{_inline(self.intro)}</p>")
        if len(self.sections) > 1:
            out.append("<nav><ul>" + "".join(
                f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>'
                for s in self.sections) + "</ul></nav>")
        for s in self.sections:
            out.append(f'<section id="{_anchor(s.title)}"><h2>{html.escape(s.title)}</h2>')
            for block in s.blocks:
                out.append(_html_block(block))
            out.append("</section>")
        out += ["</body>", "</html>", ""]
        return "\n".join(out)

    def write(self, html_path, markdown_path):
        """Writes the page, the Markdown file and its figures (``<md stem>_figures/``)."""
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(self.to_html())
        stem = os.path.splitext(os.path.basename(markdown_path))[0] + "_figures"
        folder = os.path.join(os.path.dirname(os.path.abspath(markdown_path)), stem)
        if self.figures():
            os.makedirs(folder, exist_ok=True)
        for name, png in self.figures():
            with open(os.path.join(folder, name + ".png"), "wb") as f:
                f.write(png)
        with open(markdown_path, "w", encoding="utf-8") as f:
            f.write(self.to_markdown(stem).rstrip("\n") + "\n")
        return html_path, markdown_path


def _numeric(rows, col):
    """Whether every non-empty cell of column ``col`` reads as a number (right-aligned)."""
    cells = [r[col] for r in rows if col < len(r) and r[col]]
    return bool(cells) and all(re.match(r"^[-+]?[\d.,]+(%|x| KiB)?$", c) for c in cells)


def _anchor(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _inline(text):
    """Escaped text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_block(block):
    kind = block[0]
    if kind == "text":
        return f"<p>{_inline(block[1])}</p>"
    if kind == "missing":
        return f'<p class="missing">{_inline(block[1])}</p>'
    if kind == "table":
        num = [_numeric(block[2], i) for i in range(len(block[1]))]
        cls = lambda i: ' class="n"' if num[i] else ""  # noqa: E731
        head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(block[1]))
        body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_inline(c)}</td>"
                                        for i, c in enumerate(r)) + "</tr>"
                       for r in block[2])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    _, name, png, caption = block
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")
