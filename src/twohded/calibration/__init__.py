"""Camera calibration on real triplets (defocused photo, sharp photo, registered depth).

- :mod:`.triplets`: loading and registering triplets (a folder, or DFD indoor), held-out split;
- :mod:`.photometry`: exposure/vignetting fit, PSNR and SSIM of a render against a photo;
- :mod:`.search`: the fit of focus distance and blur gain (surrogate tables, renderer refinement);
- :mod:`.report`: :func:`calibrate` end to end, its report, residual figure and camera file.

``twohded camera calibrate`` is the command line; ``scripts/fit_dfd_camera.py`` uses the same
code for the ``dfd_indoor`` preset.
"""

from .photometry import apply_photometric, compare, photometric_fit, ssim_separable
from .report import calibrate, calibration_markdown, evaluate_variants, residual_figure, write_calibration
from .search import (
    DFD_GRID,
    SIGMA_LEVELS,
    SearchGrid,
    camera_from_fit,
    error_table,
    fit_camera,
    gaussian_blur,
    per_bin_blur,
    render,
    torch_threads,
)
from .triplets import Triplet, TripletFiles, dfd_files, dfd_triplets, folder_files, folder_triplets, holdout_split, load_triplet, load_triplets

__all__ = [
    "Triplet", "TripletFiles", "load_triplet", "load_triplets", "folder_files", "folder_triplets", "dfd_files",
    "dfd_triplets", "holdout_split", "photometric_fit", "apply_photometric", "compare", "ssim_separable",
    "SearchGrid", "DFD_GRID", "SIGMA_LEVELS", "camera_from_fit", "gaussian_blur", "render", "error_table",
    "fit_camera", "per_bin_blur", "torch_threads", "calibrate", "evaluate_variants", "calibration_markdown",
    "residual_figure", "write_calibration",
]
