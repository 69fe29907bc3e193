!note GPT-OSS: its analysis channel shows as <think>, from reasoning_content (llama-server by default) or from its channel tokens (--reasoning-format none).
!note Unsloth's settings, as the original's profile has them.
!:temperature 0.6
!:top_k 0
!:top_p 1.0
!:max_tokens 16384
!gpt-oss
!exclude think
