"""``adaptive audit``: stress-test a defense with one call and write the page a reviewer reads
(``run.audit``: the probes, ``auto``, the checklist, the binarization test, Tramèr's reduction;
``result.AuditResult``: what it found; ``page``: the self-contained HTML report)."""

from adaptive.auditing.result import AuditResult, sweep_page
from adaptive.auditing.run import audit
from adaptive.auditing.threats import Threat, parse_threat

__all__ = ["AuditResult", "Threat", "audit", "parse_threat", "sweep_page"]
