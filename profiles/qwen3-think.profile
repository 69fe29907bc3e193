!:temperature 0.6
!:min_p 0.0
!:top_p 0.95
!:top_k 20
!:max_tokens 16384
!exclude think
