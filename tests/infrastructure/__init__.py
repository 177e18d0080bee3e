"""Infrastructure tests: invariants of ``template.yaml`` (and the build files it points at), read as data."""
