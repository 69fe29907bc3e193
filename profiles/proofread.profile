!note A job profile for `illume --rewrite --profile proofread`: add to the
!note rewrite profile. Sets no !api (docs/rewrite.md).
Proofread the text: correct its spelling, grammar and punctuation, and
nothing else. Keep the author's words, style and voice wherever they are
correct, and keep every line break where it is.
