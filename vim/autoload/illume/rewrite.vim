" illume#rewrite: :IllumeRewrite, the new text of some lines streamed beside
" the old in diff mode, to take or drop hunk by hunk (do, dp) or whole
" (:IllumeTake, :IllumeDrop). See :help illume-rewrite.
"
" The new text streams into a scratch buffer that holds the whole buffer with
" the lines being rewritten replaced, so that the two line up in diff mode
" and Vim's own diff commands take a hunk. The buffer itself changes only
" when the user takes something: the old text stays on any failure.

let s:sessions = {}   " scratch bufnr -> the rewrite shown in it
let s:count = 0       " rewrites so far, to name their scratch buffers

" :[range]IllumeRewrite [instruction]
function! illume#rewrite#start(first, last, instruction) abort
  let l:buf = bufnr('%')
  if has_key(s:sessions, l:buf)
    return s:error('this is the new text of a rewrite: :IllumeRewrite the buffer it came from')
  endif
  call s:close(s:session_of(l:buf))
  let l:session = {'buf': l:buf, 'old': getline(a:first, a:last),
        \ 'before': getline(1, a:first - 1), 'after': getline(a:last + 1, '$'),
        \ 'instruction': a:instruction, 'result': 'running', 'reply': {}, 'why': ''}
  let l:filetype = &filetype
  let l:window = win_getid()
  " The scratch buffer: never a file, never read for a modeline.
  vertical rightbelow new
  setlocal buftype=nofile bufhidden=wipe noswapfile nobuflisted nomodeline
  let s:count += 1
  silent! execute 'file' fnameescape('illume-rewrite-' . s:count . ' of ' . bufname(l:buf))
  let l:session.scratch = bufnr('%')
  call setline(1, l:session.before + [''] + l:session.after)
  let &l:filetype = l:filetype
  diffthis
  let s:sessions[l:session.scratch] = l:session
  augroup illume_rewrite
    execute 'autocmd BufWipeout <buffer=' . l:session.scratch . '> call illume#rewrite#_wiped('
          \ . l:session.scratch . ')'
  augroup END
  call win_gotoid(l:window)
  diffthis
  let l:session.reply = illume#_start(l:session.scratch, 'rewrite', l:session.old,
        \ ['--rewrite', '--stream'] + s:profile(), ['--'] + (empty(a:instruction) ? [] : [a:instruction]),
        \ {'lines_after': len(l:session.after), 'replace': 1, 'Done': function('s:done', [l:session])})
  if empty(l:session.reply)
    call s:close(l:session)
  endif
endfunction

" The job profile: b:/g:illume_rewrite_profile, if set (else illume's own,
" `rewrite`).
function! s:profile() abort
  let l:name = get(b:, 'illume_rewrite_profile', get(g:, 'illume_rewrite_profile', ''))
  return empty(l:name) ? [] : ['--profile', l:name]
endfunction

function! s:done(session, reply, status) abort
  let a:session.reply = {}
  let l:arrived = a:reply.tail !=# ''
  if a:status == 0 && !a:reply.stopped
    let a:session.result = 'ok'
    if !l:arrived
      " Nothing at all: the lines are to go (the line the text would fill goes too).
      call deletebufline(a:session.scratch, len(a:session.before) + 1)
    endif
    if bufwinid(a:session.scratch) != -1
      call win_execute(bufwinid(a:session.scratch), 'diffupdate')
    endif
    echo 'illume: the rewrite is done: take it with :IllumeTake or hunk by hunk with do, or :IllumeDrop'
    return
  endif
  let a:session.result = a:reply.stopped ? 'stopped' : 'error'
  let l:why = a:reply.stopped ? 'stopped' : matchstr(a:reply.err, '\%(illume: \)\=\zs\S[^\n]*\ze\n*$')
  let a:session.why = empty(l:why) ? 'illume exited with status ' . a:status : l:why
  if !l:arrived && bufexists(a:session.scratch)
    " Nothing to look at: close the view.
    call s:close(a:session)
  endif
  if !a:reply.stopped
    echohl ErrorMsg
    echomsg 'illume: the rewrite failed, your text is as it was: ' . a:session.why
    echohl None
  endif
endfunction

" :IllumeTake[!]: the whole new text replaces the old, as one undo step.
function! illume#rewrite#take(bang) abort
  let l:session = s:session_of(bufnr('%'))
  if empty(l:session)
    return s:error('no rewrite of this buffer to take')
  elseif l:session.result ==# 'running'
    return s:error('the rewrite is still running: wait for it, or :IllumeStop it')
  elseif l:session.result !=# 'ok' && !a:bang
    return s:error('the rewrite did not finish (' . l:session.why . '): taking it would drop the'
          \ . ' rest of your text; :IllumeTake! takes it as it is, do takes a hunk')
  elseif !bufexists(l:session.buf)
    call s:close(l:session)
    return s:error('the buffer is gone')
  endif
  let l:count = getbufinfo(l:session.scratch)[0].linecount
  let l:new = getbufline(l:session.scratch, len(l:session.before) + 1, l:count - len(l:session.after))
  let l:where = s:locate(l:session)
  if empty(l:where)
    return s:error('the text around the rewritten lines changed since the rewrite started;'
          \ . ' take hunks with do, or :IllumeDrop')
  endif
  let l:old_text = join(getbufline(l:session.buf, l:where[0], l:where[1]), "\n")
  call s:replace(l:session.buf, l:where[0], l:where[1], l:new)
  call s:close(l:session)
  if illume#_has_modeline(join(l:new, "\n")) && !illume#_has_modeline(l:old_text)
    echohl WarningMsg
    echomsg 'illume: the new text holds a line Vim reads as a modeline (vim: or ex:); check it before saving'
    echohl None
  endif
endfunction

" :IllumeDrop: close the rewrite; what was taken with do stays.
function! illume#rewrite#drop() abort
  let l:session = s:session_of(bufnr('%'))
  if empty(l:session)
    return s:error('no rewrite of this buffer to drop')
  endif
  call s:close(l:session)
endfunction

" Returns [first, last], the lines of the buffer that the new text replaces:
" those between the unchanged lines before and after the rewritten ones
" (whatever hunks were taken meanwhile), else the old lines themselves where
" they are now (the nearest, when found twice); [] when neither is found.
function! s:locate(session) abort
  let l:lines = getbufline(a:session.buf, 1, '$')
  let [l:nbefore, l:nafter] = [len(a:session.before), len(a:session.after)]
  if len(l:lines) >= l:nbefore + l:nafter
        \ && (l:nbefore == 0 || l:lines[: l:nbefore - 1] ==# a:session.before)
        \ && (l:nafter == 0 || l:lines[len(l:lines) - l:nafter :] ==# a:session.after)
    return [l:nbefore + 1, len(l:lines) - l:nafter]
  endif
  let l:size = len(a:session.old)
  let l:found = []
  for l:start in range(0, len(l:lines) - l:size)
    if l:lines[l:start : l:start + l:size - 1] ==# a:session.old
      call add(l:found, l:start)
    endif
  endfor
  if empty(l:found)
    return []
  endif
  let l:distance = map(copy(l:found), 'abs(v:val - l:nbefore)')
  let l:start = l:found[index(l:distance, min(l:distance))]
  return [l:start + 1, l:start + l:size]
endfunction

" Replaces lines FIRST to LAST of BUF with NEW, as one undo step: the change
" runs in one command, in a window showing BUF where there is one.
function! s:replace(buf, first, last, new) abort
  let s:pending = [a:buf, a:first, a:last, a:new]
  let l:windows = win_findbuf(a:buf)
  if bufnr('%') == a:buf || empty(l:windows)
    call illume#rewrite#_replace_pending()
  else
    call win_execute(l:windows[0], 'call illume#rewrite#_replace_pending()')
  endif
endfunction

function! illume#rewrite#_replace_pending() abort
  let [l:buf, l:first, l:last, l:new] = s:pending
  unlet s:pending
  let l:old = l:last - l:first + 1
  let l:same = min([l:old, len(l:new)])
  if l:same > 0
    call setbufline(l:buf, l:first, l:new[: l:same - 1])
  endif
  if len(l:new) > l:old
    call appendbufline(l:buf, l:first + l:old - 1, l:new[l:same :])
  elseif l:old > len(l:new)
    call deletebufline(l:buf, l:first + l:same, l:last)
  endif
endfunction

" Returns the rewrite shown for BUF (the buffer rewritten or its scratch), or {}.
function! s:session_of(buf) abort
  if has_key(s:sessions, a:buf)
    return s:sessions[a:buf]
  endif
  for l:session in values(s:sessions)
    if l:session.buf == a:buf
      return l:session
    endif
  endfor
  return {}
endfunction

" Ends SESSION: its job stops, its scratch buffer goes, diff mode ends in the
" windows of the buffer.
function! s:close(session) abort
  if empty(a:session) || !has_key(s:sessions, a:session.scratch)
    return
  endif
  call remove(s:sessions, a:session.scratch)
  call illume#_stop_now(a:session.scratch)
  if bufexists(a:session.scratch)
    execute 'autocmd! illume_rewrite * <buffer=' . a:session.scratch . '>'
    execute 'silent! bwipeout!' a:session.scratch
  endif
  for l:window in win_findbuf(a:session.buf)
    call win_execute(l:window, 'diffoff')
  endfor
endfunction

" The scratch buffer was wiped (its window closed): the rewrite is dropped.
function! illume#rewrite#_wiped(scratch) abort
  call s:close(get(s:sessions, a:scratch, {}))
endfunction

function! s:error(message) abort
  echohl ErrorMsg
  echomsg 'illume: ' . a:message
  echohl None
endfunction
