!infill codellama.jinja
!:stop ["<EOT>"]
