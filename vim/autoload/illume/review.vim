" illume#review: :IllumeReview fills the quickfix list with illume's grounded
" suggestions for the buffer; :IllumeApply takes one. See :help illume-review.
"
" illume prints one suggestion a line (docs/rewrite.md):
"     FILE:LINE:COL: "QUOTE" -> "REPLACEMENT": MESSAGE
" QUOTE and REPLACEMENT are JSON strings and COL counts characters. The
" quickfix list keeps the quote and the replacement in its context (neither
" Vim 9.0 nor Neovim 0.7 keeps an entry's user_data); applying one puts the
" replacement in the buffer as text, and only where the quote still is.

let s:json_string = '"\%([^"\\]\|\\.\)*"'

" Filetypes of prose, reviewed with illume's `review` profile; any other
" filetype is code, reviewed with `review-code`.
let s:prose = ['', 'text', 'markdown', 'mail', 'gitcommit', 'tex', 'plaintex', 'rst', 'asciidoc', 'org',
      \ 'help', 'pandoc', 'vimwiki', 'html', 'xml']

" :IllumeReview [instruction]
function! illume#review#start(instruction) abort
  let l:buf = bufnr('%')
  let l:name = empty(bufname(l:buf)) ? '<stdin>' : bufname(l:buf)
  let l:reply = illume#_start(l:buf, 'review', getline(1, '$'),
        \ ['--review', '--file-name', l:name] + s:profile(),
        \ (empty(a:instruction) ? [] : [a:instruction =~# '^-' ? ' ' . a:instruction : a:instruction]) + ['--'],
        \ {'Done': function('s:done', [l:buf, l:name, a:instruction])})
  if !empty(l:reply)
    echo 'illume: reviewing ' . l:name . ' (:IllumeStop stops)'
  endif
endfunction

" The job profile: b:/g:illume_review_profile, else `review` for prose and
" `review-code` for code, by 'filetype'.
function! s:profile() abort
  let l:name = get(b:, 'illume_review_profile', get(g:, 'illume_review_profile', ''))
  if empty(l:name)
    let l:name = index(s:prose, &filetype) >= 0 ? 'review' : 'review-code'
  endif
  return ['--profile', l:name]
endfunction

function! s:done(buf, name, instruction, reply, status) abort
  let l:said = filter(split(a:reply.err, "\n"), 'v:val =~# "\\S"')
  if a:status != 0
    echohl ErrorMsg
    echomsg a:reply.stopped ? 'illume: the review was stopped' : 'illume: the review failed: '
          \ . (empty(l:said) ? 'illume exited with status ' . a:status : substitute(l:said[-1], '^illume: ', '', ''))
    echohl None
    return
  endif
  let [l:items, l:suggestions] = [[], []]
  let l:unread = 0
  for l:line in split(a:reply.out, "\n")
    let l:found = s:parse(a:buf, a:name, l:line)
    if empty(l:found)
      let l:unread += 1
      continue
    endif
    call add(l:items, l:found[0])
    call add(l:suggestions, l:found[1])
  endfor
  call setqflist([], ' ', {'title': 'illume review' . (empty(a:instruction) ? '' : ': ' . a:instruction),
        \ 'items': l:items, 'context': {'illume_review': l:suggestions}})
  let l:window = win_getid()
  botright cwindow
  call win_gotoid(l:window)
  echomsg 'illume: ' . len(l:items) . ' suggestion' . (len(l:items) == 1 ? '' : 's')
        \ . ' in the quickfix list; :IllumeApply takes one'
        \ . (l:unread ? '; ' . l:unread . ' line(s) could not be read' : '')
        \ . join(map(l:said, '"; " . substitute(v:val, "^illume: ", "", "")'), '')
endfunction

" Returns [quickfix item, suggestion] of LINE, one of illume's suggestion
" lines for NAME, the name of buffer BUF; [] when it is not one.
function! s:parse(buf, name, line) abort
  if stridx(a:line, a:name . ':') != 0
    return []
  endif
  let l:rest = strpart(a:line, len(a:name) + 1)
  let l:parts = matchlist(l:rest, '^\(\d\+\):\(\d\+\): \(' . s:json_string . '\) -> \(' . s:json_string
        \ . '\)\%(: \(.*\)\)\=$')
  if empty(l:parts)
    return []
  endif
  try
    let [l:quote, l:replacement] = [json_decode(l:parts[3]), json_decode(l:parts[4])]
  catch
    return []  " a string Vim cannot hold (a NUL, a lone surrogate)
  endtry
  if type(l:quote) != v:t_string || type(l:replacement) != v:t_string || empty(l:quote)
    return []
  endif
  let l:lnum = str2nr(l:parts[1])
  let l:col = s:byte_column(get(getbufline(a:buf, l:lnum), 0, ''), str2nr(l:parts[2]))
  let l:quoted = split(l:quote, "\n", 1)
  let l:item = {'bufnr': a:buf, 'lnum': l:lnum, 'col': l:col, 'type': 'W',
        \ 'end_lnum': l:lnum + len(l:quoted) - 1,
        \ 'end_col': len(l:quoted) == 1 ? l:col + len(l:quote) : len(l:quoted[-1]) + 1,
        \ 'text': l:parts[3] . ' -> ' . l:parts[4] . (empty(l:parts[5]) ? '' : ': ' . l:parts[5])}
  return [l:item, {'quote': l:quote, 'replacement': l:replacement, 'applied': 0}]
endfunction

" Returns the byte column of character column COL (1-based, each code point
" counted, as illume counts) in LINE.
function! s:byte_column(line, col) abort
  let l:byte = byteidxcomp(a:line, a:col - 1)
  return l:byte < 0 ? len(a:line) + 1 : l:byte + 1
endfunction

" :IllumeApply: the suggestion under the cursor in the quickfix window, else
" the current entry of the quickfix list, replaces its quote in the buffer.
function! illume#review#apply() abort
  let l:list = getqflist({'idx': 0, 'items': 0, 'context': 0})
  let l:index = &buftype ==# 'quickfix' ? line('.') : l:list.idx
  let l:suggestions = type(l:list.context) == v:t_dict ? get(l:list.context, 'illume_review', []) : []
  if empty(l:suggestions) || l:index < 1 || l:index > len(l:suggestions)
    return s:error('the quickfix list holds no illume review here (:IllumeReview fills it)')
  endif
  let l:item = l:list.items[l:index - 1]
  let l:suggestion = l:suggestions[l:index - 1]
  if l:suggestion.applied
    return s:error('suggestion ' . l:index . ' is applied already')
  endif
  let l:buf = l:item.bufnr
  if !bufexists(l:buf)
    return s:error('its buffer is gone')
  endif
  call bufload(l:buf)
  let l:where = s:find(l:buf, l:item.lnum, l:item.col, l:suggestion.quote)
  if empty(l:where)
    return s:error('the text changed: line ' . l:item.lnum . ' no longer holds ' . json_encode(l:suggestion.quote))
  endif
  let s:pending = [l:buf, l:where, l:suggestion]
  let l:windows = win_findbuf(l:buf)
  if bufnr('%') == l:buf || empty(l:windows)
    call illume#review#_apply_pending()
  else
    call win_execute(l:windows[0], 'call illume#review#_apply_pending()')
  endif
  let l:suggestion.applied = 1
  " The items as Vim moved them along with the lines the change added or removed.
  let l:items = getqflist({'items': 0}).items
  let l:items[l:index - 1].text = 'applied: ' . l:items[l:index - 1].text
  call setqflist([], 'r', {'items': l:items, 'idx': l:index, 'context': l:list.context})
  if illume#_has_modeline(l:suggestion.replacement) && !illume#_has_modeline(l:suggestion.quote)
    echohl WarningMsg
    echomsg 'illume: the replacement holds a line Vim reads as a modeline (vim: or ex:); check it before saving'
    echohl None
  endif
endfunction

" Returns [lnum, byte col] where QUOTE (which may span lines) starts in BUF:
" at LNUM, COL if it is there, else its occurrence on line LNUM nearest to
" COL (a suggestion applied before it on the line moved it); [] when none.
function! s:find(buf, lnum, col, quote) abort
  let l:span = len(split(a:quote, "\n", 1))
  let l:text = join(getbufline(a:buf, a:lnum, a:lnum + l:span - 1), "\n")
  if strpart(l:text, a:col - 1, len(a:quote)) ==# a:quote
    return [a:lnum, a:col]
  endif
  let l:line_end = stridx(l:text . "\n", "\n")
  let [l:best, l:at] = [-1, stridx(l:text, a:quote)]
  while l:at >= 0 && l:at <= l:line_end
    if l:best < 0 || abs(l:at + 1 - a:col) < abs(l:best + 1 - a:col)
      let l:best = l:at
    endif
    let l:at = stridx(l:text, a:quote, l:at + 1)
  endwhile
  return l:best < 0 ? [] : [a:lnum, l:best + 1]
endfunction

" Puts the pending suggestion's replacement in place of its quote, in one
" change: the lines it spans are set anew (one undo step).
function! illume#review#_apply_pending() abort
  let [l:buf, l:where, l:suggestion] = s:pending
  unlet s:pending
  let [l:lnum, l:col] = l:where
  let l:span = len(split(l:suggestion.quote, "\n", 1))
  let l:text = join(getbufline(l:buf, l:lnum, l:lnum + l:span - 1), "\n")
  let l:new = split(strpart(l:text, 0, l:col - 1) . l:suggestion.replacement
        \ . strpart(l:text, l:col - 1 + len(l:suggestion.quote)), "\n", 1)
  let l:same = min([l:span, len(l:new)])
  call setbufline(l:buf, l:lnum, l:new[: l:same - 1])
  if len(l:new) > l:span
    call appendbufline(l:buf, l:lnum + l:span - 1, l:new[l:same :])
  elseif l:span > len(l:new)
    call deletebufline(l:buf, l:lnum + l:same, l:lnum + l:span - 1)
  endif
endfunction

function! s:error(message) abort
  echohl ErrorMsg
  echomsg 'illume: ' . a:message
  echohl None
endfunction
