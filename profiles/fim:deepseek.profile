!infill deepseek.jinja
