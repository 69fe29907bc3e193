!note For `illume --review`: asks the server to answer in the suggestions'
!note JSON shape (a JSON schema; llama-server and OpenAI-compatible APIs take
!note `response_format`), so that even a small local model gives suggestions
!note illume can read. Load it after the profile that names the server.
!note The lengths are bounded, so that a model that repeats itself stops.
!:response_format {"type": "json_schema", "json_schema": {"name": "suggestions", "schema": {"type": "object", "properties": {"suggestions": {"type": "array", "maxItems": 20, "items": {"type": "object", "properties": {"quote": {"type": "string", "maxLength": 300}, "replacement": {"type": "string", "maxLength": 300}, "message": {"type": "string", "maxLength": 120}}, "required": ["quote", "replacement", "message"], "additionalProperties": false}}}, "required": ["suggestions"], "additionalProperties": false}}}
