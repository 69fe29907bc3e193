!infill mistral.jinja
