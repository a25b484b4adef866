"""Turning a finished run's checkpoints into answers, one module per question: held-out behaviour
(:mod:`.behavior`), alignment (:mod:`.align`), barriers (:mod:`.barriers`), basins (:mod:`.basins`),
early detection (:mod:`.early`), training length (:mod:`.training_length`), basin count
(:mod:`.basin_count`), the init-space map (:mod:`.init_map`), seed factors (:mod:`.seed_factors`),
and :mod:`.pipeline`, which runs them in order (``rlbasins analyze``). Never imports training."""
