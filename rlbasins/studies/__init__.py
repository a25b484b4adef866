"""Studies that drive training themselves (rather than analysing a finished run): :mod:`.steering`."""
