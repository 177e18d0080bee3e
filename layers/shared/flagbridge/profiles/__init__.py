"""User profiles: per (traffic type, key) the flags they were exposed to and their tester mark."""
