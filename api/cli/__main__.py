"""`python -m api.cli` is the same as the `hallmark` console script (tests use it, so they run the checkout's code)."""

from api.cli import main

main()
