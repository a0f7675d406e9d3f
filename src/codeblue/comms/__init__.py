"""codeblue.comms — reliable delivery, communication cadence and the public status page.

- ``outbox``: ``enqueue(...)``, the seam every outbound side effect goes through (dedup key, same transaction).
- ``sender`` / ``transport`` / ``channels``: claim → deliver (Slack, SMTP, signed webhook, PagerDuty v2) → record,
  with backoff, jitter and dead-lettering; channel secrets sealed by ``crypto``.
- ``service`` / ``config`` / ``templates``: cadence per severity, reminders, updates with required facts.
- ``statuspage``: components, public incidents, ``summary.json`` (Atlassian shape), Atom feed, HTML.
"""
