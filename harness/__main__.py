import sys

from .cli import main
from .memory import keep_freed_memory

keep_freed_memory()  # an entry point, not a library import: see harness/memory.py
sys.exit(main())
