"""Turning trained seeds into answers: behaviour on held-out states (more to come: alignment,
connectivity, basins, early detection)."""
