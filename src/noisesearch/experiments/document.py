"""Report documents: typed blocks and their Markdown and HTML (images inline) rendering; figures are drawn with
noisesearch.plotting."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from noisesearch.files import write_atomically


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str  # Markdown; HTML drops its ** emphasis


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG under the report's directory
    alt: str


Block = Heading | Paragraph | Table | Figure


def to_markdown(blocks: list[Block], out: Path) -> str:
    """The blocks as Markdown, figures linked relative to `out`."""
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|" + " --- |" * len(block.header)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows] + [""]
        else:
            lines += [f"![{block.alt}]({block.path.relative_to(out)})", ""]
    return "\n".join(lines)


def to_html(blocks: list[Block]) -> str:
    """The blocks as one self-contained HTML page (figures inline as base64 PNG)."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text).replace('**', '')}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode(block.path.read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
                        f"<figcaption>{html.escape(block.alt)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img{max-width:100%}")
    head = f"<head><meta charset='utf-8'><title>noisesearch report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"


def write_document(blocks: list[Block], out: Path) -> tuple[Path, Path]:
    """Write out/report.md and out/report.html (UTF-8, each atomically: a failed write leaves no partial file;
    text that is no UTF-8, such as a path of other bytes, is written as backslash escapes); returns both paths."""
    md, page = out / "report.md", out / "report.html"
    write_atomically(md, to_markdown(blocks, out) + "\n", errors="backslashreplace")
    write_atomically(page, to_html(blocks), errors="backslashreplace")
    return md, page
