"""The shipped reward models: ``<name>.yaml`` (recipe), ``<name>.safetensors`` and ``<name>.json`` (card)."""
