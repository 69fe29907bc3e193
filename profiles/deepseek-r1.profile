!:temperature 0.6
!:max_tokens 10000
!profile fim:deepseek
!exclude think
