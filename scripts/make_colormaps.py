"""Write src/twohded/resources/colormaps.npz: matplotlib's turbo and viridis as (256, 3) uint8 tables.

    python scripts/make_colormaps.py

twohded.colormap reads these tables, so that colour-mapping a depth image needs no matplotlib.
tests/test_colormap.py checks that the stored tables equal matplotlib's.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np

from twohded.colormap import SHIPPED

OUT = Path(__file__).resolve().parents[1] / "src" / "twohded" / "resources" / "colormaps.npz"


def main() -> None:
    tables = {name: matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3] for name in SHIPPED}
    buf = io.BytesIO()
    np.savez_compressed(buf, **tables)
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {', '.join(tables)} (matplotlib {matplotlib.__version__})")


if __name__ == "__main__":
    main()
