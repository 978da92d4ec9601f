from llmship.cli import main

main()
