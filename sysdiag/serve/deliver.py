"""Delivering a finished diagnosis: a generic webhook (the JSON record) and a
Slack-compatible incoming webhook (text + blocks).

Each POST has a timeout; failures are retried a bounded number of times with backoff
(connection errors, timeouts, 429 and 5xx; other statuses are final). What happened is
stored on the record's `deliveries`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

import httpx

from .store import Delivery, Diagnosis, now_iso

SLACK_TEXT_MAX = 2900  # a section block's text is at most 3000 characters
SLACK_HEADER_MAX = 150
TOP_N = 3


@dataclass(frozen=True)
class Destination:
    kind: str  # "webhook" | "slack"
    url: str

    @property
    def target(self) -> str:
        """The URL without path or query: Slack puts the secret in the path."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def check_url(url: str, option: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{option} {Destination('x', url).target}: expected an http(s) URL")
    return url


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 0.5  # doubled after each failed attempt


def webhook_payload(record: Diagnosis, link: Optional[str]) -> dict[str, Any]:
    return {"event": "sysdiag.diagnosis", "link": link,
            "diagnosis": {k: v for k, v in record.to_json().items() if k != "deliveries"}}


def slack_payload(record: Diagnosis, link: Optional[str]) -> dict[str, Any]:
    report = record.report or {}
    host = _esc(str((report.get("host") or {}).get("hostname", "this host")))
    alerts = ", ".join(sorted({a["name"] for a in record.alerts.values()}))
    hyps = report.get("hypotheses") or []
    scope = ", ".join(f"{k}={v}" for k, v in record.scope.items())
    head = f"sysdiag: {record.symptom} on {host}"
    lines = [f"*Alerts:* {_esc(alerts)}",
             f"*Symptom:* {record.symptom}" + (f" ({_esc(scope)})" if scope else ""),
             f"*Result:* {_outcome(record)}"]
    if hyps:
        lines.append("*Most likely:*")
        for h in hyps[:TOP_N]:
            lines.append(f"• {_esc(h.get('title', h.get('id', '?')))} "
                         f"(`{_esc(h.get('id', '?'))}`, score {h.get('score', 0):.2f})")
    for note in record.notes:
        lines.append(f"_note: {_esc(note)}_")
    body = _cut("\n".join(lines), SLACK_TEXT_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(head, SLACK_HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
    ]
    context = f"diagnosis {record.id}" + (f" · <{link}|full report>" if link else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    top = f": {hyps[0].get('id')}" if hyps else ""
    return {"text": f"{head}: {_outcome(record)}{_esc(top)}", "blocks": blocks}


def _outcome(record: Diagnosis) -> str:
    if record.status == "failed" or record.exit_code == 2:
        return f"failed: {_esc(record.error or 'no report')}"
    total = (record.report or {}).get("hypotheses_total", 0)
    words = {0: "nothing found at or above the threshold", 1: f"{total} finding(s)",
             3: f"incomplete ({total} finding(s) so far)"}
    return words.get(record.exit_code or 0, f"exit {record.exit_code}")


def _esc(text: str) -> str:
    # Slack mrkdwn control characters; host text (process names...) must not become links
    # or mentions such as <!channel>
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


async def deliver(client: httpx.AsyncClient, dest: Destination, payload: dict[str, Any],
                  policy: Policy) -> Delivery:
    result = Delivery(destination=dest.kind, target=dest.target)
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        result.attempts = attempt
        try:
            resp = await client.post(dest.url, json=payload, timeout=policy.timeout_s)
        except httpx.HTTPError as err:
            result.http_status, result.error = None, f"{type(err).__name__}: {err}"[:300]
        else:
            result.http_status = resp.status_code
            if resp.status_code < 300:
                result.status, result.error = "delivered", None
                break
            result.error = f"HTTP {resp.status_code}"
            if resp.status_code != 429 and resp.status_code < 500:
                break  # the receiver refuses this payload: retrying will not help
        if attempt < policy.attempts:
            await asyncio.sleep(delay)
            delay *= 2
    if result.status != "delivered":
        result.status = "failed"
    result.at = now_iso()
    return result
