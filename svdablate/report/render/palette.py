"""Colours a colour-blind reader can tell apart: the Okabe–Ito palette (Okabe & Ito, 2008).

The papers mark a column's best four cells red, blue, green and cyan; the HTML page uses the
Okabe–Ito hues closest to those (vermillion, blue, bluish green, sky blue) as cell tints, always
beside the rank number, and the figures cycle through the palette with a line style per row.
"""

from __future__ import annotations

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
#: Rank 1..4 of a column: the papers' red, blue, green, cyan as Okabe–Ito hues.
RANK_HUES = ("vermillion", "blue", "bluish green", "sky blue")
#: Figure lines: hues in this order (yellow last: faint on white), dashes cycling alongside.
LINE_HUES = ("blue", "vermillion", "bluish green", "reddish purple", "orange", "sky blue", "black")
LINE_STYLES = ("-", "--", "-.", ":")
#: Verdicts of the papers' claims.
VERDICT_HUES = {"supported": "bluish green", "contradicted": "vermillion"}


def tint(hue: str, amount: float = 0.22) -> str:
    """The Okabe–Ito `hue` mixed with white (`amount` of the hue): a background dark text
    stays readable on."""
    rgb = OKABE_ITO[hue].lstrip("#")
    channels = [int(rgb[i : i + 2], 16) for i in (0, 2, 4)]
    mixed = [round(255 - amount * (255 - c)) for c in channels]
    return "#" + "".join(f"{c:02X}" for c in mixed)
