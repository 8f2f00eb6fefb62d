from paysys_dev.stack import main

main()
