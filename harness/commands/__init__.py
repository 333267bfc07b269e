"""CLI commands, one module each (discovered by harness.cli)."""
