"""`python -m svdablate.cli`: the same entry point as the installed `svdablate`."""

from svdablate.cli import main

main()
