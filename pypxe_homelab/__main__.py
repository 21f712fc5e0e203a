from pypxe_homelab.cli import main

main()
