"""A benchmark's own texts and logo as the GUI shows them. Bundle pages are Markdown
written by whoever made the bundle: they are rendered, then cleaned by nh3 (a
maintained HTML sanitiser) so no script, event handler, ``javascript:`` link or other
markup that can run ever reaches the page. The logo is served as a raster image only:
an SVG can carry scripts, so it is refused."""

from __future__ import annotations

from typing import Any

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.orm import Session

from scitq_bench.exceptions import NotFound
from scitq_bench.server.bench.logos import LOGO_TYPES
from scitq_bench.server.bench.models import Benchmark
from scitq_bench.server.storage import FileStorage, StoredFile

# what a page may use: text markup, links, images, tables; no forms, frames or styles
TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "ol", "p", "pre", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
              "td": {"align", "colspan", "rowspan"}, "th": {"align", "colspan", "rowspan"},
              "ol": {"start"}, "code": {"class"}}
SCHEMES = {"http", "https", "mailto"}

# the logo answer may run nothing and load nothing, even when opened directly
LOGO_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")


def render_markdown(text: str | None) -> Markup:
    """``text`` (Markdown, maybe with HTML in it) as safe HTML for a template."""
    html = _markdown.render(text or "")
    return Markup(nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=SCHEMES,
                            link_rel="noopener noreferrer nofollow",
                            strip_comments=True))


def logo_candidates(session: Session, benchmark: Benchmark) -> list[str]:
    """Where the benchmark's logo is in the file store: the path the import kept (a
    raster image), or none."""
    named = benchmark.logo
    return [named] if named and any(named.lower().endswith(ext) for ext in LOGO_TYPES) else []


def open_logo(files: FileStorage, candidates: list[str]) -> tuple[StoredFile, str] | None:
    """The first stored logo of ``candidates`` and its content type, or None."""
    for path in candidates:
        try:
            return files.open(path), LOGO_TYPES[path[path.rindex("."):].lower()]
        except NotFound:
            continue
    return None


def page_texts(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The pages (and the terms, as a last page) with their HTML."""
    shown = [{"title": p.get("title") or "Page", "html": render_markdown(p.get("content"))}
             for p in bench.get("pages") or []]
    if bench.get("terms"):
        shown.append({"title": "Terms", "html": render_markdown(bench["terms"])})
    return shown
