#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, its files spread over the machine's cores (pytest-xdist,
# one process per core, each with its own 4 host CPU devices). Extra arguments go to pytest and win over
# these defaults: `bash scripts/test.sh -n 0 tests/test_store.py` runs one file in this process.
# JAXFNE_TEST_WORKERS sets the number of worker processes (default: auto, one per core). The workers share
# one JAX compilation cache for the run (tests/conftest.py); JAXFNE_TEST_JAX_CACHE=0 turns it off.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python -m pytest -n "${JAXFNE_TEST_WORKERS:-auto}" --dist loadfile "$@"
