!note Hugging Face Inference Providers: the OpenAI-compatible router.
!api https://router.huggingface.co/v1
!>authorization Bearer $HF_TOKEN
!:model meta-llama/Llama-3.3-70B-Instruct
