"""One module per ``numformer`` sub-command, each with ``register(subparsers)``."""
