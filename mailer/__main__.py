"""``python -m mailer``: the same as the ``mailer`` command."""

from mailer.cli import main

# The guard keeps a spawned worker process (mailer.workers) from running the command again.
if __name__ == "__main__":
    main()
