"""Figures inlined into a markdown document as data: URIs, for viewers that cannot fetch local files.

The Prefect UI renders a markdown artifact in the browser, from the Prefect server's database: a figure
linked by a relative or `file://` path is a broken image there. `inline_images` rewrites every image
the markdown links (`![alt](path)` or `<img src="path">`) whose file exists under `base` into a
`data:image/png;base64,…` URI, so the document carries its figures. The report on disk keeps its
relative links; only the copy handed to Prefect is rewritten.

Size: the artifact is stored in Prefect's database for every run, so each figure is re-encoded as a
256-colour PNG (lossless for line plots and for image grids of ≤ 256 grey levels; crisp text, unlike
JPEG/WebP), downscaled to at most `max_px` on its longer side, and the original bytes are kept instead
whenever they are smaller. Links to URLs, data: URIs and missing files are left as they are.

Wide tables: the UI draws a markdown table as its own table component, which fixes the column widths, hides
its scrollbar and cuts off columns past the page's width. `html_tables` rewrites each markdown table as
a plain HTML <table> (which the UI's sanitiser keeps): the browser then sizes columns to their content,
wraps long cells, and the artifact's container scrolls with a visible scrollbar when a table is still wider.
"""
from __future__ import annotations

import base64
import html
import io
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_PX = 1200  # matplotlib figures here are ~600-950 px wide at dpi 110: this only bounds a huge one
# ![alt](target "title") and <img ... src="target" ...>; the target is group "src" in both.
_MD_IMG = re.compile(r'(?P<head>!\[[^\]]*\]\()(?P<src>[^)\s]+)(?P<tail>(?:\s+"[^"]*")?\))')
_HTML_IMG = re.compile(r'(?P<head><img\b[^>]*?\bsrc=["\'])(?P<src>[^"\']+)(?P<tail>["\'])', re.IGNORECASE)


@dataclass
class Inlined:
    markdown: str
    figures: dict[str, int] = field(default_factory=dict)  # each link target -> bytes of its data: URI
    missing: list[str] = field(default_factory=list)       # linked files that do not exist

    @property
    def uri_bytes(self) -> int:
        return sum(self.figures.values())


def encode_image(path: Path, max_px: int = MAX_PX) -> tuple[str, bytes]:
    """(mime type, bytes) of a small rendering of the image at `path`: a palette PNG, or the file itself
    when that is smaller or Pillow cannot read it (an SVG, say)."""
    raw = path.read_bytes()
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):  # figures are drawn on white: flatten, then one palette
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, "white")
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            elif im.mode not in ("RGB", "L"):
                im = im.convert("RGB")
            resized = max(im.size) > max_px
            if resized:
                scale = max_px / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                               Image.Resampling.LANCZOS)
            small = im if im.mode == "L" else im.quantize(256, method=Image.Quantize.MEDIANCUT)
            buf = io.BytesIO()
            small.save(buf, "PNG", optimize=True)
            if resized or len(buf.getvalue()) < len(raw):
                return "image/png", buf.getvalue()
    except Exception:  # noqa: BLE001 - not an image Pillow reads: embed the file as it is
        pass
    return mime, raw


def data_uri(path: Path, max_px: int = MAX_PX) -> str:
    mime, data = encode_image(path, max_px)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _local(src: str, base: Path) -> Path | None:
    """The file a link target names, if it is a local path (relative to `base`, absolute, or file://)."""
    if src.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(src).path))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", src) or src.startswith("#"):  # http:, data:, mailto:, anchors
        return None
    return (base / src).resolve()


def inline_images(markdown: str, base: Path, max_px: int = MAX_PX) -> Inlined:
    """Every image `markdown` links, as a data: URI; paths are relative to `base` (the document's folder)."""
    out = Inlined(markdown)
    cache: dict[Path, str] = {}

    def swap(m: re.Match) -> str:
        src = m["src"]
        path = _local(src, base)
        if path is None:
            return m[0]
        if not path.is_file():
            out.missing.append(src)
            return m[0]
        if path not in cache:
            cache[path] = data_uri(path, max_px)
        out.figures[src] = len(cache[path])
        return m["head"] + cache[path] + m["tail"]

    out.markdown = _HTML_IMG.sub(swap, _MD_IMG.sub(swap, markdown))
    return out


_ROW = re.compile(r"^\s*\|.*\|\s*$")
_RULE = re.compile(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$")


def _cells(row: str) -> list[str]:
    inner = row.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _inline(cell: str) -> str:
    """The inline markdown our tables use, as HTML: `code`, **bold**, *italic*; everything else escaped."""
    out = html.escape(cell, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<i>\1</i>", out)


def html_tables(markdown: str) -> str:
    """Every pipe table (a header row, a |---| rule, body rows) as one HTML <table> block, on consecutive
    lines so that a markdown parser reads it as a single HTML block. Text outside tables is unchanged."""
    lines, out, i = markdown.split("\n"), [], 0
    while i < len(lines):
        if i + 1 < len(lines) and _ROW.match(lines[i]) and _RULE.match(lines[i + 1]):
            head, j = _cells(lines[i]), i + 2
            body = []
            while j < len(lines) and _ROW.match(lines[j]):
                body.append(_cells(lines[j]))
                j += 1
            # cellpadding: the UI's CSS resets borders but not cell padding, so columns stay apart
            out.append('<table cellpadding="5"><thead><tr>' + "".join(f"<th>{_inline(c)}</th>" for c in head)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
            out.append("</tbody></table>")
            i = j
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)
