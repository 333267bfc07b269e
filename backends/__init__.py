"""Backends: adapters that run an OpSpec's case and return numpy outputs."""
