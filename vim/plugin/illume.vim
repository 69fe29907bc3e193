" illume: talk to a language model from the buffer (see :help illume).
if exists('g:loaded_illume') || &compatible || !illume#job#supported()
  finish
endif
let g:loaded_illume = 1

" A file in illume's buffer language holds a model's words: a `vim: set ...`
" line that a reply planted must not set options when the file is opened
" again (see :help illume-modeline). illume breaks the modelines of every
" reply it prints; this also covers files that another program wrote. Only a
" file with a modeline where Vim looks for one is searched for a line that
" starts a chat, a completion or an infill, or names the API or a profile.
function! s:guard_modelines() abort
  if !&modeline || &modelines <= 0
    return
  endif
  let l:ends = getline(1, &modelines) + getline(max([1, line('$') - &modelines + 1]), '$')
  if match(l:ends, '\%(^\|\s\)\%(vi\|[vV]im[<=>]\=\d*\|ex\):') >= 0
        \ && search('^!\%(user\|assistant\|completion\|infill\|api\|profile\)\%( \|$\)', 'nw')
    setlocal nomodeline
  endif
endfunction

augroup illume_modeline
  autocmd!
  autocmd BufReadPost * call s:guard_modelines()
augroup END

command! -bar Illume call illume#chat()
command! -bar -range IllumeInfill call illume#infill(<line1>)
command! -bar IllumeStop call illume#stop()
command! -bar IllumeUser call illume#user()
" Free text follows: no -bar, so that | and " belong to the instruction.
command! -range=% -nargs=* IllumeRewrite call illume#rewrite#start(<line1>, <line2>, <q-args>)
command! -bar -bang IllumeTake call illume#rewrite#take(<bang>0)
command! -bar IllumeDrop call illume#rewrite#drop()
command! -nargs=* IllumeReview call illume#review#start(<q-args>)
command! -bar IllumeApply call illume#review#apply()
command! -bar IllumeSummarize call illume#summarize()

nnoremap <silent> <Plug>(illume) :<C-U>Illume<CR>
nnoremap <silent> <Plug>(illume-infill) :<C-U>IllumeInfill<CR>
nnoremap <silent> <Plug>(illume-stop) :<C-U>IllumeStop<CR>
nnoremap <silent> <Plug>(illume-user) :<C-U>IllumeUser<CR>
nnoremap <silent> <Plug>(illume-summarize) :<C-U>IllumeSummarize<CR>

if !get(g:, 'illume_no_mappings', 0)
  for [s:lhs, s:plug] in [['<Leader>a', '<Plug>(illume)'],
        \ ['<Leader>f', '<Plug>(illume-infill)'],
        \ ['<Leader>s', '<Plug>(illume-stop)'],
        \ ['<Leader>u', '<Plug>(illume-user)']]
    if !hasmapto(s:plug, 'n') && maparg(s:lhs, 'n') ==# ''
      execute 'nmap' s:lhs s:plug
    endif
  endfor
  unlet s:lhs s:plug
endif
