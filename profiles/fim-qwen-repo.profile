!note Qwen2.5-Coder with the !context files above the hole as repository files.
!infill qwen-repo.jinja
!:input_extra auto
