!infill granite.jinja
