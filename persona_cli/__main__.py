from persona_cli.app import main

main()
