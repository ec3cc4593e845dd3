from titok.cli import main

main()
