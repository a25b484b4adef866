"""Studies that drive training themselves (rather than analysing one finished run): steering by abort
(:mod:`.steering`) and the scale and architecture sweep (:mod:`.sweep`). They use training and
analysis; the CLI hands them the report writer."""
