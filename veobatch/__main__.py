from veobatch.cli import main

main()
