"""Running one matrix across many nodes through an existing distributed engine (Ray: ray_engine)."""
