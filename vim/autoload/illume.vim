" illume: stream a language model's reply into the buffer (see :help illume).
"
" A reply is written at its *insertion line*, counted from the end of the
" buffer (`lines_after` lines below it), so edits above it while it streams
" never misplace it. Text above the insertion line is never changed.

let s:replies = {}   " bufnr -> the running reply of that buffer (chat, infill, rewrite or review)
let s:stop_wait_s = 3.0
" A modeline's mark as Vim finds it (:help modeline): vi: vim: Vim: ex:, after white space or
" (vim:) at the start of a line, with an optional version (vim600:, vim>700:).
let s:modeline = '\%(^\|\n\|\s\)\%(vi\|[vV]im[<=>]\=\d*\|ex\):'

" Encodings in which a file's bytes read as directives that they do not hold:
" UTF-7 (`+ACE-api` reads `!api`), UTF-16 and UTF-32 (which Vim picks from a
" byte order mark, 'fileencodings' ucs-bom), ISO-2022 and HZ (whose escape and
" shift sequences vanish: `!<Esc>(Bapi` reads `!api`), EBCDIC.
let s:misleading = '\c^\%(utf-\=7\|utf-\=16\|utf-\=32\|ucs-\=[24]\|unicode\|iso-\=2022\|csiso2022\|hz\|ebcdic\|cp0\=37\|cp500\|cp1047\|ibm-\=0\=37\|ibm-\=500\|ibm-\=1047\)'

" Commands --------------------------------------------------------------------

function! illume#chat() abort
  if s:misread()
    return
  endif
  let l:buf = bufnr('%')
  call s:stop_and_wait(l:buf)
  " `!fit summarize` (the buffer's or a profile's) may put summaries above
  " the reply: illume writes them to a file of ours (s:place).
  let l:placed = tempname()
  call s:start(l:buf, 'chat', getline(1, '$'), s:command(['--summaries-file', l:placed]), {'placed': l:placed})
endfunction

" Streams a !summary block of the buffer since its last summary at its end
" (`illume --summarize`), where a reply would go.
function! illume#summarize() abort
  if s:misread()
    return
  endif
  let l:buf = bufnr('%')
  call s:stop_and_wait(l:buf)
  call s:start(l:buf, 'chat', getline(1, '$'), s:command(['--summarize']), {})
endfunction

function! illume#infill(lnum) abort
  if s:misread()
    return
  endif
  let l:buf = bufnr('%')
  call s:stop_and_wait(l:buf)
  let l:lines = getline(1, '$')
  let l:sent = copy(l:lines)
  if l:lines[a:lnum - 1] =~# '^\s*$'
    " A blank line is the hole itself: the middle replaces it.
    let l:sent[a:lnum - 1] = '!infill'
    let [l:head, l:replace] = ['', 1]
  else
    " Any other line ends the prefix: the middle goes on new lines below it.
    call insert(l:sent, '!infill', a:lnum)
    let [l:head, l:replace] = ["\n", 0]
  endif
  call s:start(l:buf, 'infill', l:sent, s:command(s:infill_args()),
        \ {'lines_after': len(l:lines) - a:lnum, 'head': l:head, 'replace': l:replace})
endfunction

" Returns 1, saying why, when the buffer was read from its file in an encoding
" of s:misleading: illume reads a file as UTF-8, and the buffer would send it
" directives that the file does not hold.
function! s:misread() abort
  if &fileencoding !~# s:misleading
    return 0
  endif
  echohl ErrorMsg
  echomsg 'illume: not sent: the file was read as ' . &fileencoding . ', in which its bytes can read as'
        \ . ' directives they do not hold; read it as UTF-8 first (:edit ++enc=utf-8)'
  echohl None
  return 1
endfunction

" The infill's own arguments: the stopping rules (on unless set to ''), and
" the file's name, from which illume tells the language.
function! s:infill_args() abort
  let l:args = []
  let l:rules = get(b:, 'illume_stop_rules', get(g:, 'illume_stop_rules', 'all'))
  if !empty(l:rules)
    call extend(l:args, ['--stop-rules', l:rules])
  endif
  " The filetype first: it holds the user's own choice (`:setf python` on a
  " scratch buffer); the file's name where there is none.
  if !empty(&filetype)
    call extend(l:args, ['--file-name', &filetype])
  elseif !empty(bufname('%'))
    call extend(l:args, ['--file-name', expand('%:p')])
  endif
  return l:args
endfunction

function! illume#stop(...) abort
  let l:buf = a:0 ? a:1 : bufnr('%')
  let l:reply = get(s:replies, l:buf, {})
  if empty(l:reply)
    echo 'illume: no reply is running in this buffer'
    return
  endif
  call s:stop(l:reply)
endfunction

function! illume#user() abort
  let l:last = line('$')
  let l:reply = get(s:replies, bufnr('%'), {})
  if empty(l:reply) && l:last == 1 && getline(1) ==# ''
    call setline(1, ['!user', ''])
  else
    " While a reply streams, its last line stays its own: always separate.
    let l:lines = (empty(l:reply) && getline(l:last) =~# '^\s*$') ? ['!user', ''] : ['', '!user', '']
    call append(l:last, l:lines)
    if !empty(l:reply)
      let l:reply.lines_after += len(l:lines)
    endif
  endif
  call cursor(line('$'), 1)
endfunction

" Returns 1 while a reply streams into buffer BUF (default: the current one).
function! illume#running(...) abort
  return has_key(s:replies, a:0 ? a:1 : bufnr('%'))
endfunction

" The job ------------------------------------------------------------------

" Returns the command line: g:illume_command, the profile, EXTRA, g:illume_args
" and then TAIL (the arguments that must come last, after a `--`).
function! s:command(extra, ...) abort
  let l:command = get(b:, 'illume_command', get(g:, 'illume_command', ['illume']))
  let l:argv = type(l:command) == v:t_list ? copy(l:command) : split(l:command)
  if get(l:argv, 0, '') =~# '^[~$]'
    let l:argv[0] = s:expand_home(l:argv[0])
  endif
  let l:profile = get(b:, 'illume_profile', get(g:, 'illume_profile', ''))
  if !empty(l:profile)
    call extend(l:argv, ['--profile', l:profile])
  endif
  return l:argv + a:extra + get(b:, 'illume_args', get(g:, 'illume_args', [])) + get(a:, 1, [])
endfunction

" Returns WORD with a leading ~ and each $NAME or ${NAME} replaced, and
" nothing else: expand() would also run `backticks` through a shell.
function! s:expand_home(word) abort
  let l:word = substitute(a:word, '^\~\ze\%(/\|$\)', '\=$HOME', '')
  return substitute(l:word, '\$\%({\(\w\+\)}\|\(\w\+\)\)', '\=s:getenv(submatch(1) . submatch(2))', 'g')
endfunction

function! s:getenv(name) abort
  return exists('$' . a:name) ? eval('$' . a:name) : ''
endfunction

" Starts ARGV on LINES and returns the reply, or {} when it cannot start. MODE
" is 'chat', 'infill', 'rewrite' (the output streams into BUF too, but it is
" text alone: no !error section is added) or 'review' (the output is kept in
" reply.out). OPTS: lines_after, head, replace (where the output goes, see the
" top of this file) and Done, a Funcref(reply, status) called once when the
" reply ends, however it ends (STATUS -1 when unknown).
function! s:start(buf, mode, lines, argv, opts) abort
  let l:reply = extend({'buf': a:buf, 'mode': a:mode, 'lines_after': 0, 'head': '', 'replace': 0,
        \ 'tick': -1, 'newlines': 0, 'out': '', 'tail': '', 'failed': 0, 'err': '', 'stopped': 0,
        \ 'detached': 0, 'modeline': 0}, a:opts)
  try
    let l:reply.job = illume#job#start(a:argv, {
          \ 'input': a:lines,
          \ 'on_out': function('s:on_out', [l:reply]),
          \ 'on_err': function('s:on_err', [l:reply]),
          \ 'on_exit': function('s:on_exit', [l:reply]),
          \ })
  catch /^illume#job:/
    echohl ErrorMsg
    echomsg 'illume: ' . substitute(v:exception, '^illume#job: ', '', '') . ' (see :help g:illume_command)'
    echohl None
    return {}
  endtry
  let s:replies[a:buf] = l:reply
  augroup illume
    execute 'autocmd! * <buffer=' . a:buf . '>'
    execute 'autocmd BufUnload <buffer=' . a:buf . '> call illume#_unloaded(' . a:buf . ')'
  augroup END
  return l:reply
endfunction

" For the other commands of the plugin (illume#rewrite, illume#review):
" stops the reply running in BUF, then starts illume with EXTRA and TAIL
" (s:command) on LINES as s:start does; returns the reply, or {}.
function! illume#_start(buf, mode, lines, extra, tail, opts) abort
  call s:stop_and_wait(a:buf)
  return s:start(a:buf, a:mode, a:lines, s:command(a:extra, a:tail), a:opts)
endfunction

" Stops the reply running in BUF, if any, and ends it at once.
function! illume#_stop_now(buf) abort
  let l:reply = get(s:replies, a:buf, {})
  if !empty(l:reply)
    call s:stop(l:reply, 0)
  endif
endfunction

" Returns 1 when TEXT holds a line Vim could read as a modeline.
function! illume#_has_modeline(text) abort
  return a:text =~# s:modeline
endfunction

function! s:stop_and_wait(buf) abort
  " A second request stops the first; its last words (the !note) land first.
  let l:reply = get(s:replies, a:buf, {})
  if !empty(l:reply)
    call s:stop(l:reply, s:stop_wait_s)
  endif
endfunction

" Stops REPLY: the one way a reply ends early. Its job is asked to end. With
" no WAIT_S the reply ends when the job does, its last words (the `!note
" interrupted` line) landing as they come; with WAIT_S it ends here, after
" waiting up to WAIT_S seconds for them (0: at once, nothing more lands).
function! s:stop(reply, ...) abort
  let a:reply.stopped = 1
  call illume#job#stop(a:reply.job)
  if !a:0
    return
  endif
  let l:start = reltime()
  while illume#job#running(a:reply.job) && reltimefloat(reltime(l:start)) < a:1
    sleep 10m
  endwhile
  call s:detach(a:reply, -1)
endfunction

" Ends the reply: from here on the job's output goes nowhere (it is being
" stopped, or it ended). STATUS is its exit status, -1 when unknown.
function! s:detach(reply, status) abort
  let a:reply.detached = 1
  if get(s:replies, a:reply.buf, {}) is a:reply
    call remove(s:replies, a:reply.buf)
    if bufexists(a:reply.buf)
      execute 'autocmd! illume * <buffer=' . a:reply.buf . '>'
    endif
    if has_key(a:reply, 'Done')
      call a:reply.Done(a:reply, a:status)
    endif
    call s:announce(a:reply, a:status)
  endif
endfunction

" Fires User IllumeDone with g:illume_done saying how the reply ended.
function! s:announce(reply, status) abort
  let g:illume_done = {'buffer': a:reply.buf, 'command': a:reply.mode, 'exit_status': a:status,
        \ 'result': a:reply.stopped ? 'stopped' : (a:reply.failed || a:status != 0) ? 'error' : 'ok'}
  if exists('#User#IllumeDone')
    doautocmd <nomodeline> User IllumeDone
  endif
endfunction

function! illume#_unloaded(buf) abort
  let l:reply = get(s:replies, a:buf, {})
  if !empty(l:reply)
    call s:stop(l:reply, 0)
  endif
endfunction

function! s:on_out(reply, id, text) abort
  if a:reply.detached
    return
  elseif a:reply.mode ==# 'review'
    let a:reply.out .= a:text
    return
  endif
  if has_key(a:reply, 'placed')
    call s:place(a:reply)
  endif
  " Remember whether illume reported a failure itself (the chunk may cut it).
  let l:seen = a:reply.tail . a:text
  " (A rewrite's output is text alone: its failure is its exit status.)
  let a:reply.failed = a:reply.failed || (a:reply.mode !=# 'rewrite' && l:seen =~# '\n!error\n')
  let a:reply.modeline = a:reply.modeline || (a:reply.mode ==# 'infill' && l:seen =~# s:modeline)
  let a:reply.tail = strpart(l:seen, len(l:seen) - 8)
  let l:text = a:reply.head . a:text
  let a:reply.head = ''
  call s:change(a:reply, function('s:insert', [a:reply, l:text]))
endfunction

function! s:on_err(reply, id, text) abort
  let l:err = a:reply.err . a:text
  let a:reply.err = strpart(l:err, len(l:err) - 4000)
endfunction

function! s:on_exit(reply, id, status) abort
  if a:reply.detached
    return
  endif
  if has_key(a:reply, 'placed')
    call s:place(a:reply)
  endif
  if a:status != 0 && !a:reply.stopped && !a:reply.failed && a:reply.mode =~# '^\%(chat\|infill\)$'
    " illume itself failed to report (it crashed, or is not illume).
    let l:why = matchstr(a:reply.err, '\S[^\n]*\ze\n*$')
    call s:on_out(a:reply, a:id, "\n\n!error\n\nillume exited with status " . a:status
          \ . (empty(l:why) ? '' : ': ' . l:why) . "\n")
  endif
  if a:reply.mode =~# '^\%(infill\|rewrite\)$' && a:reply.newlines > 0
    " The line below the hole already starts the suffix.
    call s:change(a:reply, function('s:drop_empty_last', [a:reply]))
  endif
  if a:reply.modeline && a:reply.mode ==# 'infill'
    " Saved near the top or the end of the file, it would set options when
    " the file is next opened. (A chat file is read with 'nomodeline'.)
    echohl WarningMsg
    echomsg 'illume: the middle holds a line Vim reads as a modeline (vim: or ex:); check it before saving'
    echohl None
  endif
  call s:detach(a:reply, a:status)
endfunction

" Puts the !summary blocks that `!fit summarize` wrote to the reply's file
" (illume --summaries-file) above the lines they belong before, once, at the
" reply's first words or its end: illume writes the file before the reply.
" Its first line holds those lines, each counted with the blocks before it
" in; then come the blocks, each from its own `!summary` line (the model's
" lines are escaped: none of them begins so).
function! s:place(reply) abort
  let l:file = remove(a:reply, 'placed')
  if !filereadable(l:file)
    return
  endif
  let l:lines = readfile(l:file)
  call delete(l:file)
  let l:at = map(split(get(l:lines, 0, '')), 'str2nr(v:val)')
  let l:blocks = []
  for l:line in l:lines[1:]
    if l:line =~# '^!summary\%(\s\|$\)'
      call add(l:blocks, [])
    endif
    if !empty(l:blocks)
      call add(l:blocks[-1], l:line)
    endif
  endfor
  if len(l:blocks) == len(l:at)
    call s:change(a:reply, function('s:insert_blocks', [a:reply, l:at, l:blocks]))
  endif
endfunction

function! s:insert_blocks(reply, at, blocks) abort
  for l:i in range(len(a:at))
    if get(getbufline(a:reply.buf, a:at[l:i]), 0, '') !~# '^!\%(user\|assistant\|summary\)\>'
      echohl WarningMsg
      echomsg 'illume: the buffer changed where a summary goes (line ' . a:at[l:i] . '): not placed;'
            \ . ' the next turn writes it again'
      echohl None
      return
    endif
    call appendbufline(a:reply.buf, a:at[l:i] - 1, a:blocks[l:i])
  endfor
endfunction

" Changing the buffer ---------------------------------------------------------

function! s:line_count(buf) abort
  return getbufinfo(a:buf)[0].linecount
endfunction

function! s:insertion_line(reply) abort
  return max([1, s:line_count(a:reply.buf) - a:reply.lines_after])
endfunction

function! s:insert(reply, text) abort
  let l:parts = split(a:text, "\n", 1)
  let l:lnum = s:insertion_line(a:reply)
  let l:line = a:reply.replace ? '' : get(getbufline(a:reply.buf, l:lnum), 0, '')
  let a:reply.replace = 0
  call setbufline(a:reply.buf, l:lnum, l:line . l:parts[0])
  if len(l:parts) > 1
    call appendbufline(a:reply.buf, l:lnum, l:parts[1:])
    let a:reply.newlines += len(l:parts) - 1
  endif
endfunction

function! s:drop_empty_last(reply) abort
  let l:lnum = s:insertion_line(a:reply)
  if get(getbufline(a:reply.buf, l:lnum), 0, 'x') ==# ''
    call deletebufline(a:reply.buf, l:lnum)
  endif
endfunction

" Runs Fn to change the reply's buffer, joined to the reply's previous change
" as one undo step when nothing else changed the buffer in between. :undojoin
" acts on the current buffer, so the change runs in a window showing it.
function! s:change(reply, Fn) abort
  let l:buf = a:reply.buf
  if !bufloaded(l:buf)
    call illume#_unloaded(l:buf)
    return
  endif
  let l:join = getbufvar(l:buf, 'changedtick') == a:reply.tick
  let l:followers = s:followers(l:buf)
  try
    if bufnr('%') == l:buf
      call s:apply(l:join, a:Fn)
    elseif !empty(win_findbuf(l:buf))
      let s:pending = [l:join, a:Fn]
      call win_execute(win_findbuf(l:buf)[0], 'call illume#_apply_pending()')
    else
      call a:Fn()
    endif
  catch
    call s:stop(a:reply, 0)
    echohl ErrorMsg
    echomsg 'illume: reply stopped, cannot change buffer ' . l:buf . ': ' . v:exception
    echohl None
    return
  endtry
  let a:reply.tick = getbufvar(l:buf, 'changedtick')
  for l:winid in l:followers
    call win_execute(l:winid, 'call cursor(line("$"), strlen(getline("$")) + 1)')
  endfor
endfunction

" Returns the windows on BUF whose cursor sits on its last line: they follow
" the reply there (g:illume_follow). Not the current window while you type
" or select in it (Insert, Replace, Visual mode): that would move your work.
function! s:followers(buf) abort
  if !getbufvar(a:buf, 'illume_follow', get(g:, 'illume_follow', 1))
    return []
  endif
  return filter(win_findbuf(a:buf), 'line(".", v:val) == line("$", v:val)'
        \ . ' && (v:val != win_getid() || mode() =~# "^[nc]")')
endfunction

function! s:apply(join, Fn) abort
  if a:join
    try
      undojoin
    catch /^Vim\%((\a\+)\)\=:E790:/
      " right after an undo: start a new step
    endtry
  endif
  call a:Fn()
endfunction

function! illume#_apply_pending() abort
  let [l:join, l:Fn] = s:pending
  unlet s:pending
  call s:apply(l:join, l:Fn)
endfunction
