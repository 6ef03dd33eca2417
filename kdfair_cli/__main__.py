from kdfair_cli.cli.app import main

main()
