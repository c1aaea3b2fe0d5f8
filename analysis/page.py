"""The report's page as a list of blocks, written twice from the same list: README.md (Markdown,
figures embedded) and index.html (one page that a browser shows without a network or any script:
the pictures are the files beside it, the style is inline).

Text in a block may hold `code` spans and [links](file); everything else is shown as written.
"""

import html
import re
from dataclasses import dataclass

import pandas as pd

from analysis.tables import markdown_table

INLINE = re.compile(r"(`[^`]*`|\[[^\]]*\]\([^)]*\))")
LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0; }
main { max-width: 1400px; margin: 0 auto; padding: 1em 2em 4em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
code { font-size: 90%; background: #f2f2f2; padding: 0 0.2em; }
.wide { overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; }
nav a { margin-right: 1em; }
"""


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    cells: pd.DataFrame  # text cells, as tables.shown_table gives them


@dataclass(frozen=True)
class Picture:
    file: str  # beside the page
    alt: str  # plain text
    caption: str


@dataclass(frozen=True)
class Contents:
    """Links to every level-2 heading of the page."""


def anchor(text: str) -> str:
    """The id a heading gets, as GitHub makes it: 'Tables 2 and 3' -> 'tables-2-and-3'."""
    return re.sub(r"[^a-z0-9 _-]", "", text.lower()).replace(" ", "-")


def _sections(blocks: list) -> list[str]:
    return [block.text for block in blocks if isinstance(block, Heading) and block.level == 2]


def markdown(blocks: list) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(markdown_table(block.cells))
        elif isinstance(block, Picture):
            parts.append(f"![{block.alt}]({block.file})\n\n{block.caption}")
        elif isinstance(block, Contents):
            parts.append(" · ".join(f"[{text}](#{anchor(text)})" for text in _sections(blocks)))
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Text with its `code` spans and [links](file) as HTML, the rest escaped."""
    out = []
    for part in INLINE.split(text):
        link = LINK.fullmatch(part)
        if link:
            out.append(f'<a href="{html.escape(link[2])}">{_inline(link[1])}</a>')
        elif part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(html.escape(part))
    return "".join(out)


def _table(cells: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in cells.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(value)}</td>" for value in row) + "</tr>"
        for row in cells.itertuples(index=False)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="wide">{table}</div>'


def page(blocks: list, title: str) -> str:
    """index.html: the blocks in order, one self-contained document."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            tag = f"h{block.level}"
            parts.append(f'<{tag} id="{anchor(block.text)}">{_inline(block.text)}</{tag}>')
        elif isinstance(block, Text):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block.cells))
        elif isinstance(block, Picture):
            source = html.escape(block.file)
            parts.append(
                f'<figure><a href="{source}"><img src="{source}" alt="{html.escape(block.alt)}">'
                f"</a><figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Contents):
            links = (
                f'<a href="#{anchor(text)}">{html.escape(text)}</a>' for text in _sections(blocks)
            )
            parts.append(f"<nav>{''.join(links)}</nav>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
