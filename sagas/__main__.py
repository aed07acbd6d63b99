from sagas.replay import main

main()
