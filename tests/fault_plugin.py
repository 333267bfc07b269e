"""`pytest -p tests.fault_plugin`: registers the test-only fault backend in that pytest process
(before conftest resolves --backends)."""
from tests.fault_backend import register

register()
