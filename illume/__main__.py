from illume.cli import main

main()
