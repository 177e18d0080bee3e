"""Traffic plans: model a request, mutate it by plan, reproducibly, as a tester.

The first two steps of testing in production (the third, the oracle, lives elsewhere):

- :mod:`.model` — the **request model**: requests with weights (method, URL with ``{params}``, query,
  headers, cookies, JSON body), values that reference the run's tester (``{{tester.key}}``) and
  deterministic generators (``{{uuid}}``, ``{{now}}``, ``{{choice:a,b}}``, ``{{int:1..10}}``);
  :mod:`.har` imports one from a HAR file.
- :mod:`.plan` — the **traffic plan**: per element a probability, an attack set and a cap; per request
  a cap; maps with key/value chances and per-key overrides; JSON Pointers (``*`` for array items) into
  the body. :mod:`.planxml` reads the XML form the method was published with, as published.
- :mod:`.attacks` — the built-in, documented attack sets (text a target must refuse cleanly).
- :mod:`.generator` — ``(plan hash, seed, case index)`` → one byte-identical request and its mutations.
- :mod:`.stats` — the exact mutation frequency each element should show under the caps.
- :mod:`.manifest`, :mod:`.shrink`, :mod:`.safety` — the NDJSON manifest, ``explain``, shrinking a
  failing case, allowlist, token bucket, signed run tag.
- :mod:`.sender`, :mod:`.results`, :mod:`.run` — the real path: send, report each response to the
  bridge as a tester event, and the run loop with its budget and stop switch; :mod:`.preflight` — a
  target that does not answer before the run refuses it.

Named *traffic plan* on purpose: "data plan" is mParticle's validation contract in this project.
Pure modules import only the standard library; nothing here is imported by the Lambda handlers.
"""
