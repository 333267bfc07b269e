"""numpy float64 goldens, one module per operator, each exposing `golden(params, inputs) -> dict`."""
