"""User profiles: per (traffic type, key) the flags they were exposed to and their test-user mark."""
