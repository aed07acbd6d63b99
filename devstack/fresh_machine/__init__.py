"""README's two commands, `make run` and `make test`, on a fresh Debian 12: in a chroot of a
debootstrapped minimal bookworm (`make test-fresh`), or on this machine when it is the
fresh one (the hosted CI's debian:12 container). Standard library only: it runs before
anything is installed."""
