"""The built-in synthetic scenes as a dataset (no files needed).

Scenes come from :func:`twohded.data.synthetic.make_scene`; each split draws its seeds from
its own range, so train, val and test never share a scene:

=====  ==============================
split  seeds
=====  ==============================
train  ``0 .. n-1``
val    ``1_000_000 .. 1_000_000 + n-1``
test   ``2_000_000 .. 2_000_000 + n-1``
=====  ==============================

(``n`` up to 1_000_000 per split). Defocus is rendered (``"render"`` or ``"deferred"``).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from .base import DatasetOption, DefocusDataset, FrameInfo

SPLIT_SEED_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000}
SPLIT_SPAN = 1_000_000
DEFAULT_COUNT = {"train": 2000, "val": 200, "test": 200}


class SyntheticScenes(DefocusDataset):
    """Procedural RGB-D scenes with rendered defocus.

    Args:
        root: ignored (None); present so that every dataset is built as ``cls(root, split)``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        n: number of scenes (default 2000 / 200 / 200).
        height, width: scene size in pixels (the frame is generated at this size; ``size`` /
            ``resize`` of the common options still apply on top).
        depth_range_m: ``(near, far)`` metres.
        scene_options: further :class:`~twohded.data.synthetic.SceneConfig` fields.
        **common: see :class:`~twohded.data.base.DefocusDataset`.

    Item names are ``"scene_<seed>"``.
    """

    defocus_modes = ("render", "deferred")
    dataset_name = "synthetic"
    prepare_options = (
        DatasetOption("n", "synthetic: scenes per split (default 2000/200/200)", type=int),
        DatasetOption("height", "synthetic: scene height (default 256)", type=int),
        DatasetOption("width", "synthetic: scene width (default 256)", type=int),
    )

    def __init__(
        self,
        root=None,
        split: str = "train",
        *,
        n: int | None = None,
        height: int = 256,
        width: int = 256,
        depth_range_m: tuple[float, float] = (0.7, 10.0),
        scene_options: dict | None = None,
        **common,
    ) -> None:
        from .synthetic import SceneConfig

        common.setdefault("preset", "d3net_nyu")
        super().__init__(split, **common)
        if split not in SPLIT_SEED_BASE:
            raise InputError(f"SyntheticScenes split {split!r}: choose train, val or test")
        n = DEFAULT_COUNT[split] if n is None else int(n)
        if not 0 < n <= SPLIT_SPAN:
            raise InputError(f"SyntheticScenes: n must be in 1..{SPLIT_SPAN}, got {n}")
        self.config = SceneConfig(height=height, width=width, depth_range_m=tuple(depth_range_m), **(scene_options or {}))
        base = SPLIT_SEED_BASE[split]
        self.seeds = list(range(base, base + n))
        self.names = [f"scene_{s:07d}" for s in self.seeds]

    def frame_info(self) -> FrameInfo:
        """Adds the scenes' depth range (its far end)."""
        return replace(super().frame_info(), max_depth_m=float(self.config.depth_range_m[1]))

    def _load(self, index: int) -> dict:
        from .synthetic import make_scene

        scene = make_scene(self.seeds[index], self.config)
        return {"aif": scene.aif, "depth": scene.depth, "source": f"synthetic scene seed {scene.seed}"}
