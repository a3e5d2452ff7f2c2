"""`python -m hybridize` runs the CLI."""
from .cli import main

main()
