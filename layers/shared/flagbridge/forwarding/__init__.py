"""The CDP direction, AWS side: mParticle ingest, the router consumer and destination delivery."""
