"""The one harness for tests that drive the Vim plugin (vim/) in real, headless Vim and Neovim.

`Editor.run` writes a buffer file and a Vim script, runs the editor on them
(`vim -es`, `nvim --headless`) with the plugin loaded, lets the script's
COMMANDS run inside the editor (`Wait()` polls there until a reply is done,
so job callbacks run while it sleeps), and returns the file as the editor
left it; `Editor.messages` holds the editor's `:messages` of that run. An
error inside the script fails the test with the editor's messages and
stderr. The fixtures `editor` (each test once in Vim, once in Neovim) and
`neovim` are in conftest.py. Vim and Neovim come from test.sh (Debian
packages `vim`, `neovim`); one missing is `missing` (a failure naming it
when ILLUME_REQUIRE_ALL=1).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, missing, require_program

PLUGIN = REPO / "vim"
ILLUME = [sys.executable, "-m", "illume"]
EDITOR_TIMEOUT = 240  # seconds for one editor session, however loaded the machine
WAIT = 120  # seconds the script inside the editor waits for a reply


def vim_path() -> str:
    """Return the path of a Vim with +job and +timers."""
    path = require_program("vim", "apt-get install vim")
    features = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    if "+job" not in features or "+timers" not in features:
        missing(f"Vim with +job and +timers ({path} lacks them)", "apt-get install vim")
    return path


def neovim_path() -> str:
    """Return the path of nvim 0.7+."""
    path = require_program("nvim", "apt-get install neovim")
    version = subprocess.run([path, "--headless", "-u", "NONE", "--clean", "+echo has('nvim-0.7')", "+q"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if "1" not in version.stdout + version.stderr:
        missing(f"Neovim 0.7 or later ({path} is older)", "apt-get install neovim")
    return path


def vim_string(text: str) -> str:
    """Return TEXT as a Vim string literal."""
    return "'" + text.replace("'", "''") + "'"


def vim_list(items: list[str]) -> str:
    """Return ITEMS as a Vim list of string literals."""
    return "[" + ", ".join(vim_string(item) for item in items) + "]"


class Editor:
    """One kind of editor (vim or nvim) that runs scripts on buffer files in TMP."""

    def __init__(self, name: str, path: str, tmp: Path):
        self.name, self.path, self.tmp = name, path, tmp
        self.messages = ""  # the editor's :messages after the last run

    def run(self, buffer: str | bytes, commands: str, before: str = "", command: list[str] | None = None) -> str:
        """Run COMMANDS on a file holding BUFFER (BEFORE runs ahead of loading the plugin); return the file after.

        COMMAND is the plugin's g:illume_command (default: this checkout's
        illume on this Python). The file is read back as UTF-8, bytes that
        are not kept as surrogate escapes.
        """
        file = self.tmp / "buffer.txt"
        file.write_bytes(buffer if isinstance(buffer, bytes) else buffer.encode())
        errors, messages = self.tmp / "errors.txt", self.tmp / "messages.txt"
        errors.unlink(missing_ok=True)
        messages.unlink(missing_ok=True)
        script = self.tmp / "test.vim"
        script.write_text(SCRIPT.format(
            plugin=vim_string(str(PLUGIN)), command=vim_list(command or ILLUME), before=before,
            file=vim_string(str(file)), commands=commands, wait=WAIT,
            errors=vim_string(str(errors)), messages=vim_string(str(messages))))
        if self.name == "vim":
            argv = [self.path, "-Nu", "NONE", "-i", "NONE", "-n", "-es", "-S", str(script)]
        else:
            argv = [self.path, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S", str(script)]
        env = {**os.environ, "HOME": str(self.tmp), "XDG_CONFIG_HOME": str(self.tmp / "config"),
               "XDG_DATA_HOME": str(self.tmp / "data"), "XDG_STATE_HOME": str(self.tmp / "state"),
               "XDG_CACHE_HOME": str(self.tmp / "cache"), "NVIM_LOG_FILE": str(self.tmp / "nvim.log"),
               # The checkout's illume from any folder, and this Python for a command that names it.
               "PYTHONPATH": str(REPO), "ILLUME_TEST_PYTHON": sys.executable}
        env.pop("ILLUME_PROFILE", None)
        result = subprocess.run(argv, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=EDITOR_TIMEOUT)
        self.messages = messages.read_text() if messages.exists() else ""
        if errors.exists():
            pytest.fail(f"{self.name} script failed: {errors.read_text()}\nmessages:\n{self.messages}\n"
                        f"stderr:\n{result.stderr[-2000:]}")
        assert messages.exists(), \
            f"{self.name} did not finish the script: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        return file.read_bytes().decode("utf-8", "surrogateescape")


# The script around each test's commands. Wait() polls inside the editor,
# so job callbacks run while it sleeps. 'modeline' is set as Vim sets it
# for every user but root (tests may run as root).
SCRIPT = """\
set nocompatible
if !has('nvim')
  set encoding=utf-8
endif
set hidden noswapfile nomore modeline
let &runtimepath = {plugin} . ',' . &runtimepath
let g:illume_command = {command}
{before}
runtime plugin/illume.vim

function! WaitUntil(condition) abort
  let l:start = reltime()
  while !eval(a:condition)
    if reltimefloat(reltime(l:start)) > {wait}
      throw 'timed out waiting until ' . a:condition . ': ' . string(getline(1, '$'))
    endif
    sleep 20m
  endwhile
endfunction

function! Wait(...) abort
  call WaitUntil('!illume#running(' . (a:0 ? a:1 : bufnr('%')) . ')')
endfunction

" Waits for the reply in buffer BUF while ending the undo block there again
" and again (:help undo-break), as a user's commands between pieces do.
function! WaitBreakingUndo(buf) abort
  call WaitUntil('BreakUndo(' . a:buf . ') && !illume#running(' . a:buf . ')')
endfunction

function! BreakUndo(buf) abort
  if bufwinid(a:buf) != -1
    call win_execute(bufwinid(a:buf), 'let &undolevels = &undolevels')
  endif
  return 1
endfunction

try
  execute 'edit' fnameescape({file})
{commands}
catch
  call writefile([v:exception, v:throwpoint], {errors})
endtry
call writefile(split(execute('messages'), "\\n"), {messages})
qall!
"""
