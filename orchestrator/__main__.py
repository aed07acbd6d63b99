from orchestrator.main import main

main()
