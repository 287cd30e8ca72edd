"""What an audit found (:class:`AuditResult`): per threat model and defense the robust accuracy
with its confidence interval, what broke it, the red flags and the checks of the evaluation,
per image outcomes; saved as ``audit.json`` and drawn as ``report.html``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from adaptive.auditing.outcomes import INDICATOR
from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError

REPORT = "report.html"
SUMMARY = "audit.json"


@dataclass
class AuditResult:
    """``out``: the audit's folder; ``sections``: one per threat model
    (``adaptive.auditing.outcomes.threat_section``); ``command`` and ``settings``: how it was
    made."""

    out: Path
    sections: list[dict]
    command: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def html_path(self) -> Path:
        return Path(self.out) / REPORT

    def defenses(self) -> list[str]:
        """The defenses judged, in the run's order (``none``, the bare classifier, first)."""
        seen: dict[str, None] = {}
        for s in self.sections:
            seen.update({d["name"]: None for d in s["defenses"]})
        return list(seen)

    def section(self, threat: str | None = None) -> dict:
        """The section of ``threat`` (its text, e.g. ``linf:8/255``; default: the first)."""
        for s in self.sections:
            if threat is None or s["threat"]["text"] == threat:
                return s
        raise ToolkitError(f"the audit ran no threat {threat!r}; it ran "
                           f"{', '.join(s['threat']['text'] for s in self.sections)}")

    def outcome(self, defense: str, threat: str | None = None) -> dict:
        """The entry of ``defense`` under ``threat`` (default: the first threat model):
        ``robust_accuracy``, ``interval``, ``broken_by``, ..."""
        s = self.section(threat)
        for d in s["defenses"]:
            if d["name"] == defense:
                return d
        raise ToolkitError(f"the audit judged no defense {defense!r}; it judged "
                           f"{', '.join(d['name'] for d in s['defenses'])}")

    def robust_accuracy(self, defense: str, threat: str | None = None) -> float | None:
        """The share of attacked images ``defense`` withstood under ``threat``."""
        return self.outcome(defense, threat)["robust_accuracy"]

    def per_image(self, threat: str | None = None) -> list[dict]:
        """One row per attacked image: ``index``, ``label``, per defense ``broken`` and
        ``by`` (the member that broke it)."""
        return self.section(threat)["per_image"]

    def flags(self) -> list[dict]:
        """Every red flag of every threat model (``flag``, ``defense``, ``cure``, ...)."""
        return [{**f, "threat": s["threat"]["text"]} for s in self.sections
                for f in s["red_flags"]]

    def _fired(self, indicators: bool) -> list[dict]:
        return [{**c, "threat": s["threat"]["text"]} for s in self.sections
                for c in s["checks"]
                if c["passed"] is False and (c["kind"] == INDICATOR) == indicators]

    def failed_checks(self) -> list[dict]:
        """The checks of the evaluation that failed, with their threat model (the indicators
        of attack failure, signs on single examples, are not counted: see ``indicators``)."""
        return self._fired(indicators=False)

    def indicators(self) -> list[dict]:
        """The indicators of attack failure that fired, with their threat model."""
        return self._fired(indicators=True)

    def verdict_line(self) -> str:
        parts = []
        for s in self.sections:
            for d in s["defenses"]:
                if d["name"] == "none" or d["robust_accuracy"] is None:
                    continue
                lo, hi = d["interval"]
                parts.append(f"{d['name']} at {s['threat']['label']}: robust accuracy "
                             f"{d['robust_accuracy']:.0%} ({lo:.0%}-{hi:.0%}) on "
                             f"{d['images']} images")
        open_checks = len(self.failed_checks())
        parts.append(f"{open_checks} check(s) of the evaluation failed" if open_checks
                     else "every check of the evaluation passed")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"command": self.command, "settings": self.settings, "sections": self.sections}

    def save(self) -> None:
        """``audit.json`` and ``report.html`` in the audit's folder."""
        write_json(Path(self.out) / SUMMARY, self.to_dict())
        self.to_html(self.html_path)

    def to_html(self, path: str | Path, data_root=None) -> Path:
        """The self-contained report page (figures inline) at ``path``."""
        from adaptive.auditing.page import write_page

        return write_page(self, Path(path), data_root)

    @classmethod
    def load(cls, folder: str | Path) -> AuditResult:
        """The result of the audit in ``folder`` (its ``audit.json``)."""
        path = Path(folder) / SUMMARY
        try:
            found = json.loads(path.read_text())
            return cls(Path(folder), found["sections"], found.get("command", ""),
                       found.get("settings", {}))
        except FileNotFoundError:
            raise ToolkitError(f"{folder} holds no audit (no {SUMMARY})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ToolkitError(f"{path} is damaged or not an audit's ({e})") from e


def sweep_page(folders, path: str | Path, data_root=None) -> Path:
    """The audit's page for finished sweep folders (one section each; what only an audit
    measures, such as Tramèr's reduction, is there where the folder holds it)."""
    from adaptive.auditing.outcomes import threat_section

    sections = [threat_section(f) for f in folders]
    first = sections[0]
    defenses = [d["name"] for d in first["defenses"] if d["name"] != "none"]
    result = AuditResult(Path(path).parent, sections, command=first["command"],
                         settings={"defense": ", ".join(defenses) or "none",
                                   "model": first["model"], "dataset": first["dataset"]})
    return result.to_html(path, data_root)
