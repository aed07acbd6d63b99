"""`python -m devstack`: start throw-away stores and print their settings until Ctrl-C."""

import signal

from devstack.stack import running_stack


def main() -> None:
    with running_stack() as urls:
        for name, value in urls.as_env().items():
            print(f"export {name}={value}")
        print("# stores are up; Ctrl-C stops them and deletes their data", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
