!:temperature 1.0
!:top_k 64
!:top_p 0.95
!:min_p 0.01
!:repeat_penalty 1.0
