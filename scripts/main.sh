#!/usr/bin/env bash
# Set up (if needed) and run the main job. Extra arguments go to the job.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python scripts/main_job.py "$@"
