!note GPT-OSS on llama-server without a reasoning parser: show its analysis channel as <think>.
!gpt-oss
!:temperature 1.0
!:top_p 1.0
!exclude think
