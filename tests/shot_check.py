#!/usr/bin/env python3
"""usage: shot_check.py PNG — exit 0 when the screenshot is not blank: at least 2% of its
pixels differ from the page background (the most common colour) and it has at least 4
distinct colours (text, chart lines, table borders). Prints the numbers."""
import sys
from PIL import Image

im = Image.open(sys.argv[1]).convert("RGB")
px = list(im.getdata())
counts = {}
for p in px:
    counts[p] = counts.get(p, 0) + 1
bg, nbg = max(counts.items(), key=lambda kv: kv[1])
share = 1 - nbg / len(px)
print(f"{im.size[0]}x{im.size[1]}: background {bg}, {100 * share:.1f}% other pixels, {len(counts)} colours")
sys.exit(0 if share >= 0.02 and len(counts) >= 4 else 1)
