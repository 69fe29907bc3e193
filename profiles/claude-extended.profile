!profile claude
!:max_tokens 20000
!:thinking {"type": "enabled", "budget_tokens": 10000}
!exclude think
