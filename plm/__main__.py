from plm.cli import main

main()
