!api http://localhost:8080/
!:cache_prompt true
!:stop ["<|im_end|>"]
