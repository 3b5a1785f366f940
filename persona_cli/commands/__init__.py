"""One module per `persona` command; each keeps its heavy imports inside its functions."""
