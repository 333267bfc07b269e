"""torch same-precision references, one module per operator: `reference(params, inputs, device) -> dict`.

Inputs arrive as torch tensors on `device` (scalars and lists unchanged); a reference never
mutates its inputs (in-place ops clone the cache first) and returns torch tensors.
"""
