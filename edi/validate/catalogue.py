"""The rule catalogue: every code the platform can put in a report, in one list.

Built from the modules that own the rules, never restated here: flow codes from
`edi.validate.flowchecks.MESSAGES`, the XSD code from `edi.validate.xsd`, one entry per
schematron rule set from `edi.validate.schematron.RULESETS` (their BR-* ids are the CEN's and
FNFE's, too many and too volatile to copy; the version comes from the XSLT file, nothing is
compiled), the platform rules from `edi.validate.rules.RULES` and the routing rules from
`edi.route.routing.RULES`. Order: the order in which a flow meets them.

`docs/rules.md` is this catalogue rendered by `render_markdown()`; regenerate it with

    python -m edi.validate.catalogue > docs/rules.md

(`edi rules list --markdown` prints the same text). A test fails when the file is stale.

Severity overrides (config `[rules.severity]`, code -> fatal | warning | off) apply to invoice
rules: platform, routing and schematron ids (BR-CO-15, UBL-CR-005, ...: the ids the rule sets'
XSLT files can report). They are resolved by `edi.validate.severity`; flow codes and the XSD are
not overridable (`severity.FIXED`). `check_overrides` refuses, at load, a table that names an
unknown code or tries to change a fixed one.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

from edi.config import Config
from edi.finding import FATAL
from edi.route import routing
from edi.validate import flowchecks, rules, schematron, severity, xsd

FLUX, FACTURE = "flux", "facture"

#: How a compiled schematron names the rule of an SVRL failed-assert or successful-report:
#: `<xsl:attribute name="id">BR-CO-15</xsl:attribute>`.
_XSLT_ID = re.compile(r'<xsl:attribute name="id">([^<]+)</xsl:attribute>')

_RULESET_TEXT = {
    "EN16931-UBL": ("UBL", "Règles BR-* de la norme EN 16931 (UBL 2.1), telles que rapportées "
                           "par le schematron du CEN"),
    "EN16931-CII": ("CII", "Règles BR-* de la norme EN 16931 (CII D16B), telles que rapportées "
                           "par le schematron Factur-X EN 16931"),
    "BR-FR-UBL": ("UBL", "Règles françaises BR-FR-* de la réforme (Flux 2, UBL), telles que "
                         "rapportées par le schematron FNFE-MPE ; désactivées par défaut"),
    "BR-FR-CII": ("CII", "Règles françaises BR-FR-* de la réforme (Flux 2, CII), telles que "
                         "rapportées par le schematron FNFE-MPE ; désactivées par défaut"),
}
_RULESET_NOTE = ("code = identifiant de la règle (BR-CO-15…) ; sévérité selon son flag (fatal "
                 "ou warning) ; motif MONTANTTOTAL_ERR pour BR-CO-10 à 16, CALCUL_ERR pour "
                 "BR-CO-17 et BR-<catégorie>-08/09, REJ_SEMAN sinon")


@dataclass(frozen=True, slots=True)
class Entry:
    code: str  # what appears in CodeErreur (a rule-set name for schematron entries)
    level: str  # flux | facture
    severity: str  # default: fatal | warning
    reason: str  # reform reason code (NatureErreur)
    message: str  # one line, French
    source: str  # module that owns the rule
    syntaxes: tuple[str, ...] = ()  # empty: every syntax
    overridable: bool = True
    note: str = ""  # anything a reader needs besides the message (version, mapping...)


def entries() -> list[Entry]:
    """Every rule the platform can report, in pipeline order."""
    return list(_entries())


@functools.cache
def _entries() -> tuple[Entry, ...]:
    """Built once per process (the schematron versions hash their XSLT files)."""
    out = [
        Entry(code, FLUX, FATAL, code, message, flowchecks.__name__, overridable=code not in severity.FIXED)
        for code, message in flowchecks.MESSAGES.items()
    ]
    out.append(Entry(
        xsd.CODE, FACTURE, FATAL, xsd.REASON,
        "Structure XML invalide : la facture ne respecte pas le schéma XSD de sa syntaxe",
        xsd.__name__, overridable=xsd.CODE not in severity.FIXED,
        note="le message précise l'élément et l'erreur ; 20 erreurs au plus par facture"))
    for name in schematron.RULESETS:
        syntax, message = _RULESET_TEXT[name]
        out.append(Entry(
            name, FACTURE, FATAL, schematron.DEFAULT_REASON, message, schematron.__name__,
            syntaxes=(syntax,),
            note=f"{_RULESET_NOTE} ; version : {schematron.Schematron(name).version}"))
    for r in rules.RULES.values():
        out.append(Entry(r.code, FACTURE, r.severity, r.reason, r.message, rules.__name__,
                         syntaxes=() if r.syntaxes == rules.ALL else tuple(sorted(r.syntaxes)),
                         note=f"règle {r.name}"))
    for code, r in routing.RULES.items():
        out.append(Entry(code, FACTURE, FATAL, r.reason, r.message.rstrip("."), routing.__name__,
                         note=f"champ {r.field}"))
    return tuple(out)


@functools.cache
def _by_code() -> Mapping[str, Entry]:
    return MappingProxyType({e.code: e for e in _entries()})


def by_code() -> dict[str, Entry]:
    return dict(_by_code())


@functools.cache
def schematron_ids() -> frozenset[str]:
    """Every rule id the schematron rule sets can report (read from their XSLT files), plus
    "SCHEMATRON", the code of a failure that names no rule."""
    ids = {"SCHEMATRON"}
    for name in schematron.RULESETS:
        text = schematron.xslt_path(name).read_text(encoding="utf-8")
        ids.update(m.group(1).strip() for m in _XSLT_ID.finditer(text))
    return frozenset(ids)


def severity_for(code: str, overrides: Mapping[str, str], default: str | None = None) -> str:
    """Effective severity of `code` (fatal, warning or off), as `severity.resolve` decides it.

    The default is the catalogue's, or `default` for codes the catalogue lists only by rule set
    (schematron ids: pass the severity their flag gave). Raises KeyError for a code that is
    neither.
    """
    entry = _by_code().get(code)
    if entry is None and default is None:
        raise KeyError(f"code de règle inconnu : {code}")
    return severity.resolve(code, entry.severity if entry else default, overrides)


@dataclass(frozen=True, slots=True)
class Problem:
    """A `[rules.severity]` line that cannot be used: the code and why."""

    code: str
    text: str  # "expected ..., got ..." (the config error's wording)


def override_problems(overrides: Mapping[str, str]) -> list[Problem]:
    """What is wrong in a `[rules.severity]` table, by code; [] when fine."""
    problems = []
    for code, value in sorted(overrides.items()):
        got = f"got {json.dumps(value, ensure_ascii=False)}"
        if value not in severity.SEVERITIES:
            problems.append(Problem(code, f'expected "fatal", "warning" or "off", {got}'))
        elif code in severity.FIXED:
            problems.append(Problem(code, "expected no override: flow checks (IRR_*) and the XSD always reject, "
                                          f"they cannot be downgraded or switched off, {got}"))
        elif code not in _by_code() and code not in schematron_ids():
            problems.append(Problem(code, "expected a rule code of `edi rules list` or a schematron rule id "
                                          "(BR-CO-15, UBL-CR-005, ...), got an unknown code"))
    return problems


def check_overrides(cfg: Config) -> None:
    """Refuse, at load, a configuration whose `[rules.severity]` cannot be applied as written."""
    problems = override_problems(cfg.rules.severity)
    if problems:
        raise cfg.refuse("rules.severity", problems[0].code, problems[0].text)


def as_dicts(overrides: Mapping[str, str] | None = None) -> list[dict]:
    """The catalogue as JSON-ready dicts; `effective_severity` applies the overrides."""
    out = []
    for e in entries():
        d = asdict(e)
        d["syntaxes"] = list(e.syntaxes)
        d["effective_severity"] = severity_for(e.code, overrides or {})
        out.append(d)
    return out


# --------------------------------------------------------------------------- markdown

GENERATE_COMMAND = "python -m edi.validate.catalogue > docs/rules.md"

_SECTIONS = (
    ("Contrôles du flux", lambda e: e.level == FLUX,
     "Un échec rend tout le flux irrecevable (statut 93) ; aucune facture n'est intégrée."),
    ("Structure de la facture", lambda e: e.source == xsd.__name__,
     "Une facture dont le XSD échoue est rejetée, les autres factures du flux continuent."),
    ("Schematron EN 16931 et règles françaises", lambda e: e.source == schematron.__name__,
     "Chaque règle BR-* rapportée devient une ligne du compte rendu, avec son identifiant."),
    ("Règles de la plateforme", lambda e: e.source == rules.__name__,
     "Écart toléré sur les montants : 0,01. Montants contrôlés pour le format CPP seulement "
     "(le schematron couvre UBL et CII)."),
    ("Routage vers le destinataire", lambda e: e.source == routing.__name__,
     "Contrôlé contre l'annuaire des structures publiques."),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """The text of docs/rules.md (deterministic: no date, no path)."""
    all_entries = entries()
    lines = [
        "# Catalogue des règles",
        "",
        f"Fichier généré par `{GENERATE_COMMAND}` (même texte que "
        "`edi rules list --markdown`) : ne pas le modifier à la main.",
        "",
        "Sévérité : `fatal` rejette (le flux pour un contrôle de flux, la facture sinon), "
        "`warning` est seulement signalé. Elle se modifie par règle dans la configuration, "
        "section `[rules.severity]` (`fatal`, `warning` ou `off`), sauf pour les contrôles "
        "du flux et le XSD.",
        "",
    ]
    for title, keep, intro in _SECTIONS:
        chosen = [e for e in all_entries if keep(e)]
        lines += [f"## {title}", "", intro, "",
                  "| Code | Sévérité | Motif | Syntaxes | Message | Note |",
                  "|---|---|---|---|---|---|"]
        for e in chosen:
            syntaxes = ", ".join(e.syntaxes) or "toutes"
            lines.append(f"| `{e.code}` | {e.severity} | `{e.reason}` | {syntaxes} | "
                         f"{_cell(e.message)} | {_cell(e.note)} |")
        lines.append("")
    lines.append(f"{len(all_entries)} entrées.")
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render_markdown())


if __name__ == "__main__":
    main()
