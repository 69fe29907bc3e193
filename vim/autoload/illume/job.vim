" illume#job: run a program without a shell, in Vim 8.2+ (job_start) and
" Neovim 0.7+ (jobstart) alike. Nothing else in the plugin knows which editor
" it runs in.
"
" illume#job#start(argv, opts) -> id
"   Starts ARGV (a List of Strings, run as is, never through a shell).
"   opts.input    List of lines, as getline() gives them, written to the
"                 job's stdin each followed by a line break; then stdin is
"                 closed. A "\n" inside a line is a NUL byte in the buffer
"                 (:h NL-used-for-Nul) and is written as a NUL, never as a
"                 line break: a NUL in a saved reply must not turn into a
"                 directive line on the way to illume.
"   opts.on_out   Funcref(id, text): stdout, raw, in order, in pieces cut
"                 anywhere (mid-line, even mid-character); "\n" ends a line.
"                 Both editors deliver a NUL byte of the output as "\n" too,
"                 which is why illume never prints one.
"   opts.on_err   Funcref(id, text): stderr, the same way (optional).
"   opts.on_exit  Funcref(id, status): called exactly once, after the last
"                 on_out and on_err; STATUS is the exit status (128+N or -1
"                 when the process died of signal N).
"   Returns a Number id > 0. Throws 'illume#job: ...' when the program cannot
"   be started; no callback is called then.
"
" illume#job#stop(id)
"   Asks the job to end with SIGTERM, and kills it 2 seconds later if it
"   has not. on_exit still follows. Unknown or ended ids are ignored.
"
" illume#job#running(id) -> 1 until on_exit has been called, else 0.
"
" illume#job#supported() -> 1 when this editor can run jobs: Vim with +job
"   and +timers, or Neovim.

let s:jobs = {}      " id -> {'job': Vim job or Neovim job id, 'opts': opts, ...}
let s:next_id = 1
let s:kill_after_ms = 2000

function! illume#job#start(argv, opts) abort
  if empty(a:argv) || !executable(a:argv[0])
    throw 'illume#job: cannot run ' . string(get(a:argv, 0, '')) . ': not an executable program'
  endif
  let l:id = s:next_id
  let s:next_id += 1
  let l:entry = {'opts': a:opts, 'exited': 0, 'closed': 0, 'status': -1, 'done': 0}
  let s:jobs[l:id] = l:entry
  try
    if has('nvim')
      call s:start_nvim(l:id, l:entry, a:argv)
    else
      call s:start_vim(l:id, l:entry, a:argv)
    endif
  catch
    call remove(s:jobs, l:id)
    throw 'illume#job: cannot run ' . string(a:argv[0]) . ': ' . v:exception
  endtry
  return l:id
endfunction

function! illume#job#stop(id) abort
  let l:entry = get(s:jobs, a:id, {})
  if empty(l:entry) || l:entry.done
    return
  endif
  if has('nvim')
    " jobstop() sends SIGTERM and itself kills the job when it lingers.
    silent! call jobstop(l:entry.job)
  else
    silent! call job_stop(l:entry.job, 'term')
    call timer_start(s:kill_after_ms, function('s:kill_vim', [a:id]))
  endif
endfunction

function! illume#job#running(id) abort
  return has_key(s:jobs, a:id) && !s:jobs[a:id].done
endfunction

function! illume#job#supported() abort
  return has('nvim') || has('job') && has('timers')
endfunction

" --- Neovim -----------------------------------------------------------------

function! s:start_nvim(id, entry, argv) abort
  " Neovim calls on_exit only after both output streams are closed, so it is
  " the last callback by itself.
  let l:job = jobstart(a:argv, {
        \ 'on_stdout': function('s:nvim_data', [a:id, 'on_out']),
        \ 'on_stderr': function('s:nvim_data', [a:id, 'on_err']),
        \ 'on_exit': function('s:nvim_exit', [a:id]),
        \ })
  if l:job <= 0
    throw 'jobstart() failed (' . l:job . ')'
  endif
  let a:entry.job = l:job
  if !empty(get(a:entry.opts, 'input', []))
    " A List goes out joined by line breaks, a "\n" in an item as a NUL (:h chansend()).
    call chansend(l:job, a:entry.opts.input + [''])
  endif
  call chanclose(l:job, 'stdin')
endfunction

function! s:nvim_data(id, callback, job, data, event) abort
  " DATA is the raw chunk split on "\n" (:h channel-lines); joining it back
  " gives the chunk as it was. [''] alone is the end of the stream.
  let l:text = join(a:data, "\n")
  if l:text !=# ''
    call s:deliver(a:id, a:callback, l:text)
  endif
endfunction

function! s:nvim_exit(id, job, status, event) abort
  call s:finish(a:id, a:status)
endfunction

" --- Vim --------------------------------------------------------------------

function! s:start_vim(id, entry, argv) abort
  " exit_cb may come before the last output (:h job-exit_cb), close_cb comes
  " after it (:h close_cb): on_exit waits for both.
  let l:job = job_start(a:argv, {
        \ 'mode': 'raw',
        \ 'in_mode': 'raw',
        \ 'out_cb': function('s:vim_data', [a:id, 'on_out']),
        \ 'err_cb': function('s:vim_data', [a:id, 'on_err']),
        \ 'close_cb': function('s:vim_closed', [a:id]),
        \ 'exit_cb': function('s:vim_exited', [a:id]),
        \ 'stoponexit': 'term',
        \ })
  if job_status(l:job) ==# 'fail'
    throw 'job_start() failed'
  endif
  let a:entry.job = l:job
  let l:channel = job_getchannel(l:job)
  call s:send_lines(l:channel, get(a:entry.opts, 'input', []))
  call ch_close_in(l:channel)
endfunction

" Writes LINES to CHANNEL, each followed by a line break, a "\n" inside one
" as a NUL byte: a String cannot hold a NUL, so each goes as a Blob of its own.
function! s:send_lines(channel, lines) abort
  if empty(a:lines)
    return
  endif
  if match(a:lines, "\n") < 0
    call ch_sendraw(a:channel, join(a:lines, "\n") . "\n")
    return
  endif
  let l:run = []  " the lines since the last NUL
  for l:line in a:lines
    let l:parts = split(l:line, "\n", 1)
    for l:part in l:parts[:-2]
      call ch_sendraw(a:channel, join(add(l:run, l:part), "\n"))
      call ch_sendraw(a:channel, 0z00)
      let l:run = []
    endfor
    call add(l:run, l:parts[-1])
  endfor
  call ch_sendraw(a:channel, join(l:run, "\n") . "\n")
endfunction

function! s:vim_data(id, callback, channel, text) abort
  call s:deliver(a:id, a:callback, a:text)
endfunction

function! s:vim_closed(id, channel) abort
  let l:entry = get(s:jobs, a:id, {})
  if empty(l:entry)
    return
  endif
  " Output still buffered in the channel is delivered before close_cb.
  let l:entry.closed = 1
  if l:entry.exited
    call s:finish(a:id, l:entry.status)
  endif
endfunction

function! s:vim_exited(id, job, status) abort
  let l:entry = get(s:jobs, a:id, {})
  if empty(l:entry)
    return
  endif
  let l:entry.exited = 1
  let l:entry.status = a:status
  if l:entry.closed
    call s:finish(a:id, a:status)
  endif
endfunction

function! s:kill_vim(id, timer) abort
  let l:entry = get(s:jobs, a:id, {})
  if !empty(l:entry) && !l:entry.done && job_status(l:entry.job) ==# 'run'
    silent! call job_stop(l:entry.job, 'kill')
  endif
endfunction

" --- Both -------------------------------------------------------------------

function! s:deliver(id, callback, text) abort
  let l:entry = get(s:jobs, a:id, {})
  if !empty(l:entry) && !l:entry.done && has_key(l:entry.opts, a:callback)
    call l:entry.opts[a:callback](a:id, a:text)
  endif
endfunction

function! s:finish(id, status) abort
  let l:entry = get(s:jobs, a:id, {})
  if empty(l:entry) || l:entry.done
    return
  endif
  let l:entry.done = 1
  call remove(s:jobs, a:id)
  if has_key(l:entry.opts, 'on_exit')
    call l:entry.opts.on_exit(a:id, a:status)
  endif
endfunction
