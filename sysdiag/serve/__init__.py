"""`sysdiag serve`: a small HTTP service that diagnoses this host when an alert fires.

alerts (payload parsing, fingerprints) -> alertmap (alert -> symptom, scope) ->
scheduler (dedupe, bounded queue, one per symptom) -> worker (the pipeline in a child
process, under a deadline) -> store (GET /diagnoses/ID) and deliver (webhook, Slack).
app wires them into Starlette; config holds the settings and the safety checks.
See docs/serve.md.
"""
