!infill qwen.jinja
