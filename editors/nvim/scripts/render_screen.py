#!/usr/bin/env python3
"""Render a Neovim screen-grid dump (from tests/test_editors_nvim.py) to a PNG.

    CODEHONE_NVIM_SCREEN=/tmp/screen.json pytest tests/test_editors_nvim.py -k inline_ghost
    python editors/nvim/scripts/render_screen.py /tmp/screen.json editors/nvim/ghost-text.png

The dump is what Neovim itself had on its grid (nvim__inspect_cell for every cell: the text and
its colours), so the picture is the editor's own screen, not a drawing. Needs Pillow and a
monospace TrueType font (DejaVu Sans Mono by default; --font to choose another).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/Library/Fonts/DejaVuSansMono.ttf",
]


def rgb(value: int | None, default: int) -> tuple[int, int, int]:
    v = default if value is None else value
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def render(grid: dict, font_path: str, size: int, out: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    regular = ImageFont.truetype(font_path, size)
    bold_path = font_path.replace("Mono.ttf", "Mono-Bold.ttf")
    italic_path = font_path.replace("Mono.ttf", "Mono-Oblique.ttf")
    bold = ImageFont.truetype(bold_path, size) if Path(bold_path).exists() else regular
    italic = ImageFont.truetype(italic_path, size) if Path(italic_path).exists() else regular
    ascent, descent = regular.getmetrics()
    cell_w = round(regular.getlength("M"))
    cell_h = ascent + descent + 2
    rows = grid["rows"]
    cols = max(len(r) for r in rows)
    pad = 12
    img = Image.new("RGB", (cols * cell_w + 2 * pad, len(rows) * cell_h + 2 * pad), rgb(grid["bg"], 0))
    draw = ImageDraw.Draw(img)
    default_fg, default_bg = grid["fg"], grid["bg"]
    for y, row in enumerate(rows):
        for x, cell in enumerate(row):
            text, fg, bg, is_bold, is_italic, underline, reverse = cell
            fgc, bgc = rgb(fg, default_fg), rgb(bg, default_bg)
            if reverse:
                fgc, bgc = bgc, fgc
            x0, y0 = pad + x * cell_w, pad + y * cell_h
            if bgc != rgb(default_bg, 0):
                draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=bgc)
            if text and text != " ":
                font = bold if is_bold else italic if is_italic else regular
                draw.text((x0, y0 + 1), text, font=font, fill=fgc)
            if underline:
                draw.line([x0, y0 + cell_h - 2, x0 + cell_w - 1, y0 + cell_h - 2], fill=fgc)
    cursor = grid.get("cursor")
    if cursor:  # Insert mode: a bar before the cell, as a terminal shows it
        cy, cx = cursor
        x0, y0 = pad + cx * cell_w, pad + cy * cell_h
        width = 2 if str(grid.get("mode", "")).startswith("i") else cell_w
        draw.rectangle([x0, y0, x0 + width - 1, y0 + cell_h - 1], fill=rgb(default_fg, 0xFFFFFF))
    img.save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--font", help="monospace .ttf (default: DejaVu Sans Mono)")
    parser.add_argument("--size", type=int, default=15)
    args = parser.parse_args(argv)
    font = args.font or next((f for f in FONT_CANDIDATES if Path(f).exists()), None)
    if font is None:
        print("no monospace font found: pass --font", file=sys.stderr)
        return 2
    render(json.loads(args.dump.read_text()), font, args.size, args.png)
    print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
