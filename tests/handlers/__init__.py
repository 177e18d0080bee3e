"""Handler tests: Lambda handlers run in process against moto, driven by events/ files."""
