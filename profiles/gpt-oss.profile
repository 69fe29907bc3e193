!note GPT-OSS on llama-server without a reasoning parser: show its analysis channel as <think>.
!note Unsloth's settings, as the original's profile has them.
!:temperature 0.6
!:top_k 0
!:top_p 1.0
!:max_tokens 16384
!gpt-oss
!exclude think
