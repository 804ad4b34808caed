#!/usr/bin/env bash
# The first cross-validation run's session script (docs/dfd_results.md), now the study script
# without resuming: BUDGET_S=520 bash scripts/gpu_session_dfd_cv.sh OUT_DIR [scripts/dfd_cv.py args ...]
# (results in OUT_DIR/study.tgz; see scripts/gpu_session_dfd_study.sh).
exec bash "$(dirname "$0")/gpu_session_dfd_study.sh" "$@"
