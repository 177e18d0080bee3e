"""Local development tools: run the bridge on this machine against moto, without AWS or Docker."""
