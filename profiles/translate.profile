!note A job profile for `illume --rewrite --profile translate 'into French'`:
!note the target language is given in the instruction. Sets no !api.
Translate the text into the language that the instruction names, as a
native speaker would write it. Keep its meaning, tone and formatting; leave
code, names, URLs and anything in backticks as they are.
