"""The report as data: a list of sections, drawn by one Markdown and one HTML renderer that know nothing of content."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """A table cell with a tone (its colour in HTML) and a hint (shown on hover in HTML; Markdown shows the text):
    how a verdict matrix carries its conditions without a column for them."""

    text: str
    tone: str = ""  # good | bad | unsure | none
    hint: str = ""

    def __str__(self) -> str:
        return self.text


Table = tuple[list[str], list[list[str | Cell]]]
HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
    "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}td.good{background:#d8f0d8}td.bad{background:#f6d5d5}"
    "td.unsure{background:#fbeccb}td.none{background:#eee;color:#777}td[title]{cursor:help;text-align:center}"
    "details{margin:1em 0}summary{cursor:pointer;font-weight:600}"
)


@dataclass(frozen=True)
class Section:
    """A heading and what follows it; `figures` is called only when drawing HTML, so Markdown never needs plotly."""

    title: str  # "" draws no heading: a paragraph before the first heading
    level: int = 2
    note: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: Callable[[], list[Any]] = list  # returns plotly figures
    items: list[str] = field(default_factory=list)
    lead: str = ""  # bold words that open the note
    folded: bool = False  # HTML: the tables start folded (a detail the first screen does not need)


def markdown_table(table: Table) -> str:
    header, rows = table

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(table: Table) -> str:
    header, rows = table

    def cell_html(cell: str | Cell) -> str:
        if not isinstance(cell, Cell):
            return f"<td>{html.escape(cell)}</td>"
        tone = f" class='{cell.tone}'" if cell.tone else ""
        hint = f" title='{html.escape(cell.hint, quote=True)}'" if cell.hint else ""
        return f"<td{tone}{hint}>{html.escape(cell.text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell_html(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_markdown(title: str, sections: list[Section]) -> str:
    """Markdown has no place for interactive plots, so figures are left out."""
    blocks = [f"# {title}"]
    for section in sections:
        if section.title:
            blocks.append(f"{'#' * section.level} {section.title}")
        if section.note:
            blocks.append(f"**{section.lead}** {section.note}" if section.lead else section.note)
        blocks += [markdown_table(table) for table in section.tables]
        if section.items:
            blocks.append("\n".join(f"- {item}" for item in section.items))
    return "\n\n".join(blocks) + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    """One self-contained page: plotly.js is inlined once so every figure works offline."""
    from plotly.offline import get_plotlyjs

    title = html.escape(title)
    parts = [f"<h1>{title}</h1>"]
    for section in sections:
        if section.title:
            parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        if section.note:
            lead = f"<b>{html.escape(section.lead)}</b> " if section.lead else ""
            parts.append(f"<p>{lead}{html.escape(section.note)}</p>")
        tables = "".join(html_table(table) for table in section.tables)
        if section.folded and tables:
            tables = f"<details><summary>{len(section.tables[0][1])} rows: show the table</summary>{tables}</details>"
        parts.append(tables)
        parts += [figure.to_html(full_html=False, include_plotlyjs=False) for figure in section.figures()]
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in section.items) + "</ul>")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{HTML_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{''.join(parts)}</body></html>"
    )
