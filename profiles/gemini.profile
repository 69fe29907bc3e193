!note Gemini through its OpenAI-compatible endpoint.
!api https://generativelanguage.googleapis.com/v1beta/openai
!>authorization Bearer $GEMINI_API_KEY
!:model gemini-2.5-flash
!:max_tokens 10000
