"""``python -m semanticodec``: the command line (see semanticodec.cli)."""

from semanticodec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
