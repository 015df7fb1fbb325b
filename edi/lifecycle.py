"""The invoice's life cycle after deposit, as one table: statuses 01–12, who may set each and
after which status, final states, reasons (design notes, "Life cycle after deposit").

Pure: no I/O, no database, no stage imported. Every path that changes a status — the pipeline
(01, 03), recipients' status flows, ops commands — asks `check_move` first, so the rules live
here once; `docs/lifecycle.md` is this table rendered by `render_markdown()`:

    python -m edi.lifecycle > docs/lifecycle.md

A refused move is a `Refusal`: a reform rejection code (REJ_RG, REJ_HAB, REJ_INC, REJ_INEX) and
a one-line French message naming the statuses involved.

>>> check_move("03", "07", OPS) is None
True
>>> print(check_move("05", "07", RECIPIENT))
REJ_RG : la facture est au statut final 05 (Rejetée) : passage à 07 (Service fait) impossible
>>> status_for_reason("JUSTIF_ABS"), status_for_reason("REF_ERR"), status_for_reason("DOUBLON")
('06', '04', '05')
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

#: Application code of the platform: `Emetteur/Id` of its reports, producer of 01 and 03.
PLATFORM_APP = "EDI"

# Who sets a status. Ops act for recipients without EDI (and for support).
PLATFORM, RECIPIENT, SUPPLIER, OPS = "platform", "recipient", "supplier", "ops"
ACTORS = (PLATFORM, RECIPIENT, SUPPLIER, OPS)
ACTOR_LABELS = {
    PLATFORM: "la plateforme",
    RECIPIENT: "le destinataire",
    SUPPLIER: "le fournisseur",
    OPS: "l'exploitation",
}

NEW = ""  # the "current status" of an invoice not yet deposited
DEPOSITED, AVAILABLE, TO_RECYCLE, REJECTED, SUSPENDED = "01", "03", "04", "05", "06"
COMPLETED = "12"


@dataclass(frozen=True, slots=True)
class Status:
    """One row of the table: the status, who may set it, and after which statuses."""

    code: str
    label: str  # the CPPStatut label (reports)
    name: str  # the portal's short name (ops, docs, messages)
    set_by: tuple[str, ...]
    after: tuple[str, ...]  # statuses it may follow (NEW: the deposit itself)
    final: bool = False
    reason: bool = False  # a reform reason is required, and decides between 04, 05 and 06
    mandate: bool = False  # a mandate number (IdMandatDP) may be given
    meaning: str = ""


_BY_RECIPIENT = (RECIPIENT, OPS)
_OPEN = (AVAILABLE, COMPLETED)  # made available to the recipient (first time, or completed)

#: THE table. Order: the official code order.
STATUSES: tuple[Status, ...] = (
    Status("01", "Déposée", "Déposée", (PLATFORM,), (NEW,),
           meaning="la facture a passé les contrôles ; son numéro de dépôt et son certificat sont émis"),
    Status("02", "En cours d'acheminement vers le destinataire", "En cours d'acheminement", (PLATFORM,),
           ("01",), meaning="la facture est en route vers le destinataire"),
    Status("03", "Mise à disposition du destinataire", "Mise à disposition", (PLATFORM,),
           ("01", "02", TO_RECYCLE),
           meaning="la facture est remise au destinataire (après 04 : recyclée par le fournisseur)"),
    Status("04", "Rejetée par l'ordonnateur pour erreur dans les données d'acheminement", "A recycler",
           _BY_RECIPIENT, (*_OPEN, SUSPENDED), reason=True,
           meaning="SIRET, code service ou EJ erroné : le fournisseur renvoie la facture, même numéro, "
                   "avec ces seules données corrigées"),
    Status("05", "Rejetée par l'ordonnateur pour autre motif", "Rejetée", _BY_RECIPIENT,
           (*_OPEN, SUSPENDED), final=True, reason=True,
           meaning="données de facturation erronées : le fournisseur émet une nouvelle facture, "
                   "avec un nouveau numéro (celui-ci reste pris)"),
    Status("06", "Suspendue", "Suspendue", _BY_RECIPIENT, _OPEN, reason=True,
           meaning="pièces justificatives absentes ou insuffisantes : le fournisseur les ajoute (12)"),
    Status("07", "Service fait", "Service fait", _BY_RECIPIENT, _OPEN,
           meaning="le service fait est constaté (facultatif)"),
    Status("08", "Mandatée / DP validée", "Mandatée", _BY_RECIPIENT, (*_OPEN, "07"), mandate=True,
           meaning="le mandat est émis (facultatif)"),
    Status("09", "Mise à disposition du comptable", "Mise à disposition du comptable", _BY_RECIPIENT,
           (*_OPEN, "07", "08"), mandate=True, meaning="le mandat est transmis au comptable (facultatif)"),
    Status("10", "Comptabilisée", "Comptabilisée", _BY_RECIPIENT, (*_OPEN, "07", "08", "09"), mandate=True,
           meaning="le comptable a pris en charge la dépense (facultatif)"),
    Status("11", "Mise en paiement", "Mise en paiement", _BY_RECIPIENT, (*_OPEN, "07", "08", "09", "10"),
           final=True, mandate=True, meaning="le paiement est envoyé à la banque"),
    Status("12", "Complétée – mise à disposition", "Complétée", (SUPPLIER,), (SUSPENDED,),
           meaning="le fournisseur a ajouté les pièces demandées ; la facture est de nouveau remise "
                   "au destinataire, qui la traite comme au statut 03"),
)
BY_CODE: dict[str, Status] = {s.code: s for s in STATUSES}
LABELS: dict[str, str] = {s.code: s.label for s in STATUSES}

#: The official statuses the platform does not support yet (validation circuits, works).
UNSUPPORTED: dict[str, str] = {
    "13": "Validée par le premier valideur",
    "14": "Refusée par le premier valideur pour autre motif",
    "15": "Validation 1 hors délai",
    "16": "Validation 2 hors délai",
    "17": "Refusée par le second valideur pour autre motif",
    "18": "Validée par le second valideur",
    "19": "Refusée par la MOE pour autre motif",
    "20": "Refusée par le fournisseur pour autre motif",
    "21": "Associée",
    "22": "Conforme – non intégrée",
    "23": "Mise à disposition du premier valideur",
    "24": "Refusée par le premier valideur pour erreur dans les données d'acheminement",
    "25": "Mise à disposition du second valideur",
    "26": "Refusée par le second valideur pour erreur des données d'acheminement",
    "27": "Mise à disposition MOE",
    "28": "Refusée par la MOE pour erreur dans les données d'acheminement",
    "29": "Prise en compte MOE",
    "30": "Mise à disposition MOA",
    "31": "Refusée par la MOA pour erreur dans les données d'acheminement",
    "32": "Refusée par la MOA pour autre motif",
    "33": "Mise à disposition fournisseur",
    "34": "Demande de complément",
    "35": "Transmise à la MOA",
    "36": "Prise en compte par le destinataire",
    "37": "Non conforme – non intégrée",
    "38": "Prise en compte par la MOA",
    "39": "Acheminée MOA",
    "40": "Acheminée MOE",
    "41": "Remplacée par A22",
}

#: Reasons a recipient gives with 04, 05 or 06: the reform's business list (MDT-113, reference
#: §2.6), labelled as the Chorus Pro portal's "motifs de rejet" where it has them.
REASONS: dict[str, str] = {
    "JUSTIF_ABS": "Justificatif absent ou insuffisant",
    "CODE_ROUTAGE_ERR": "Code service (SE) incorrect",
    "REF_CT_ABSENT": "Engagement juridique (EJ) absent",
    "REF_ERR": "EJ incorrect ou inexistant, erreur dans les données de l'engagement",
    "EMMET_INC": "Créancier inconnu ou différent de celui de l'EJ",
    "COORD_BANC_ERR": "Erreur de coordonnées bancaires",
    "LIVR_INCOMP": "Livraison incomplète ou non effectuée",
    "CMD_ERR": "Facture non conforme à la commande",
    "DOUBLE_FACT": "Double facturation",
    "MONTANTTOTAL_ERR": "Montant de la facture erroné",
    "TX_TVA_ERR": "Taux de TVA erroné",
    "CONTRAT_TERM": "Marché terminé",
    "ST_CT_NON_DECLAR": "Sous-traitant ou cotraitant non déclaré",
    "SUPPR_COMP_AVOIR": "Suppression pour compensation d'avoirs",
    "RETRAIT_MAN_SERV": "Retraitement manuel par les services",
    "TRANSF_PMNT_REGIE": "Transfert pour paiement en régie",
    "CONTACT_ACHTR": "Autre motif : contacter votre acheteur",
    "AUTRE": "Autre motif",
    "NON_TRANSMISE": "Facture non transmise",
    "ROUTAGE_ERR": "Erreur de routage",
    "CALCUL_ERR": "Erreur de calcul dans la facture",
    "NON_CONFORME": "Facture non conforme aux mentions obligatoires",
    "DOUBLON": "Facture en doublon",
    "DEST_INC": "Destinataire inconnu",
    "DEST_ERR": "Erreur de destinataire",
    "TRANSAC_INC": "Transaction inconnue",
    "ADR_ERR": "Adresse de facturation erronée",
    "SIRET_ERR": "SIRET erroné ou absent",
    "PU_ERR": "Prix unitaire erroné",
    "REM_ERR": "Remise erronée",
    "QTE_ERR": "Quantité facturée erronée",
    "ART_ERR": "Article facturé erroné",
    "MODPAI_ERR": "Modalités de paiement erronées",
    "QUALITE_ERR": "Qualité de l'article livré non conforme",
}
#: The reason decides the refusal, as in the portal: a missing document suspends, a routing
#: error (SE, EJ) sends back for recycling, anything else rejects.
_REASON_STATUS = {"JUSTIF_ABS": SUSPENDED, "CODE_ROUTAGE_ERR": TO_RECYCLE, "REF_CT_ABSENT": TO_RECYCLE,
                  "REF_ERR": TO_RECYCLE}

#: Refusal codes of a status change (reform rejection reasons for statuses, reference §2.6).
REFUSALS: dict[str, str] = {
    "REJ_INEX": "facture inexistante",
    "REJ_HAB": "producteur non habilité à poser ce statut (ou pour cette facture)",
    "REJ_RG": "changement contraire aux règles du cycle de vie",
    "REJ_INC": "donnée obligatoire absente ou invalide (statut, motif)",
}

_STATUS_CODE = re.compile(r"\d\d")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a status change is refused: a REFUSALS code and a one-line French message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} : {self.message}"


def describe(code: str) -> str:
    """'07 (Service fait)': a status as messages name it."""
    status = BY_CODE.get(code)
    if status is not None:
        return f"{code} ({status.name})"
    return f"{code} ({UNSUPPORTED[code]})" if code in UNSUPPORTED else code or "(non déposée)"


def status_for_reason(reason: str) -> str:
    """The refusal a reason means: 06 Suspendue, 04 A recycler or 05 Rejetée."""
    if reason not in REASONS:
        raise KeyError(reason)
    return _REASON_STATUS.get(reason, REJECTED)


def check_move(current: str, new: str, actor: str, reason: str = "", mandate: str = "") -> Refusal | None:
    """None when `actor` may move an invoice from `current` to `new` with this reason and
    mandate number; otherwise the first rule broken. Checked in this order: the status exists
    (REJ_INC) and is supported (REJ_RG); the actor may set it at all (REJ_HAB); the invoice is
    not final and the move is in the table (REJ_RG); the reason and mandate fit (REJ_INC,
    REJ_RG)."""
    if actor not in ACTORS:
        raise ValueError(f"unknown actor {actor!r}")
    if current != NEW and current not in BY_CODE:
        raise ValueError(f"unknown current status {current!r}")
    if not _STATUS_CODE.fullmatch(new) or not "01" <= new <= "41":
        return Refusal("REJ_INC", f"statut « {new} » inconnu : les statuts vont de 01 à 41")
    if new in UNSUPPORTED:
        return Refusal("REJ_RG", f"le statut {describe(new)} n'est pas encore pris en charge "
                                 "par la plateforme (circuits de validation)")
    target = BY_CODE[new]
    if actor not in target.set_by:
        who = " ou ".join(ACTOR_LABELS[a] for a in target.set_by)
        return Refusal("REJ_HAB", f"{ACTOR_LABELS[actor]} ne peut pas poser le statut {describe(new)} : "
                                  f"seul(e) {who} le peut")
    if current in BY_CODE and BY_CODE[current].final:
        return Refusal("REJ_RG", f"la facture est au statut final {describe(current)} : "
                                 f"passage à {describe(new)} impossible")
    if current not in target.after:
        sources = ", ".join(describe(c) for c in target.after)
        return Refusal("REJ_RG", f"passage de {describe(current)} à {describe(new)} interdit : "
                                 f"{new} ne peut suivre que {sources}")
    return _check_reason(target, reason) or _check_mandate(target, mandate)


def _check_reason(target: Status, reason: str) -> Refusal | None:
    if not reason:
        if target.reason:
            return Refusal("REJ_INC", f"motif obligatoire pour le statut {describe(target.code)} "
                                      "(liste de la réforme, voir docs/lifecycle.md)")
        return None
    if reason not in REASONS:
        return Refusal("REJ_INC", f"motif « {reason} » inconnu : voir la liste de la réforme "
                                  "dans docs/lifecycle.md")
    if not target.reason:
        return Refusal("REJ_RG", f"un motif ne s'emploie qu'avec les statuts 04, 05 et 06, "
                                 f"pas avec {describe(target.code)}")
    meant = status_for_reason(reason)
    if meant != target.code:
        return Refusal("REJ_RG", f"le motif {reason} ({REASONS[reason]}) correspond au statut "
                                 f"{describe(meant)}, pas à {describe(target.code)}")
    return None


def _check_mandate(target: Status, mandate: str) -> Refusal | None:
    if mandate and not target.mandate:
        allowed = ", ".join(s.code for s in STATUSES if s.mandate)
        return Refusal("REJ_RG", f"un numéro de mandat ne s'emploie qu'avec les statuts {allowed}, "
                                 f"pas avec {describe(target.code)}")
    return None


def next_statuses(current: str, actor: str) -> list[str]:
    """The statuses `actor` may set from `current` (reason and mandate aside)."""
    if current in BY_CODE and BY_CODE[current].final:
        return []
    return [s.code for s in STATUSES if actor in s.set_by and current in s.after]


# ------------------------------------------------------------------ docs/lifecycle.md

GENERATE_COMMAND = "python -m edi.lifecycle > docs/lifecycle.md"


def _yes(flag: bool) -> str:
    return "oui" if flag else "—"


def _section(title: str, intro: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["", f"## {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown() -> str:
    """The text of docs/lifecycle.md (deterministic: no date, no path)."""
    lines = [
        "# Cycle de vie d'une facture après dépôt",
        "",
        f"Fichier généré par `{GENERATE_COMMAND}` depuis la table de `edi/lifecycle.py` : "
        "ne pas le modifier à la main.",
        "",
        "Chaque changement de statut est vérifié par cette table, enregistré (date, producteur, "
        "statut, motif, commentaire, numéro de mandat) et envoyé au fournisseur dans un compte rendu "
        "de traitement `FEN1200A` adressé à l'opérateur qui a déposé la facture. L'exploitation "
        "(`edi invoices status`) agit pour les destinataires sans EDI : elle peut poser les mêmes "
        "statuts qu'eux.",
        "",
        "## Statuts",
        "",
        "| Statut | Libellé | Posé par | Après | Final | Motif | N° de mandat | Signification |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in STATUSES:
        after = ", ".join(c or "dépôt" for c in sorted(s.after))
        label = s.label if s.label == s.name else f"{s.name} — {s.label}"
        who = ", ".join(ACTOR_LABELS[a] for a in s.set_by)
        lines.append(f"| `{s.code}` | {label} | {who} | {after} | {_yes(s.final)} | "
                     f"{'obligatoire' if s.reason else '—'} | {'facultatif' if s.mandate else '—'} | "
                     f"{s.meaning} |")
    lines += [
        "",
        "Les statuts 07 à 10 sont facultatifs et ordonnés ; 11 peut suivre 03 ou l'un d'eux. "
        "Après 12 Complétée, le destinataire traite la facture comme au statut 03. "
        "Un statut ne se pose pas deux fois de suite.",
        "",
        "## Changements permis",
        "",
        "Ligne : statut courant ; colonne : nouveau statut. `D` destinataire ou exploitation, "
        "`P` plateforme, `F` fournisseur.",
        "",
        "| de \\ vers | " + " | ".join(s.code for s in STATUSES) + " |",
        "|---" * (len(STATUSES) + 1) + "|",
    ]
    letter = {PLATFORM: "P", RECIPIENT: "D", SUPPLIER: "F"}
    for current in (NEW, *BY_CODE):
        cells = []
        for s in STATUSES:
            who = "".join(dict.fromkeys(letter[a] for a in s.set_by if a in letter and current in s.after))
            cells.append(who if who and not (current and BY_CODE[current].final) else "")
        lines.append(f"| {current or 'dépôt'} | " + " | ".join(cells) + " |")
    lines += _section(
        "Motifs (04, 05, 06)",
        "Le motif décide du statut, comme sur le portail : `JUSTIF_ABS` suspend (06) ; "
        "`CODE_ROUTAGE_ERR`, `REF_CT_ABSENT` et `REF_ERR` renvoient la facture à recycler (04) ; "
        "tout autre motif la rejette (05). Un statut qui ne correspond pas à son motif est refusé.",
        ("Motif", "Libellé", "Statut"),
        [(f"`{code}`", label, describe(status_for_reason(code))) for code, label in REASONS.items()],
    )
    lines += _section(
        "Refus",
        "Un changement refusé ne modifie rien ; il est signalé par un code et un message d'une ligne.",
        ("Code", "Cas"),
        [(f"`{code}`", text) for code, text in REFUSALS.items()],
    )
    lines += [
        "",
        "## Pour l'exploitation",
        "",
        "- `edi invoices status N°_DE_DÉPÔT STATUT [--reason MOTIF] [--comment TEXTE] [--mandate N°] "
        "[--by NOM]` pose un statut au nom du destinataire ; le producteur est `--by`, à défaut "
        "l'utilisateur du système. Un refus affiche son code et ne change rien (code de sortie 2).",
        "- `edi invoices recycle N°_DE_DÉPÔT [--siret S] [--service C] [--ej E] [--by NOM]` recycle une "
        "facture au statut 04 pour le fournisseur : nouvelles données d'acheminement vérifiées par les "
        "règles de routage, retour à 03, nouvelle remise (`Renvoi` = Recyclée).",
        "- `edi invoices complete N°_DE_DÉPÔT --attach FICHIER... [--comment C] [--by NOM]` complète une "
        "facture au statut 06 pour le fournisseur : pièces ajoutées, statut 12, nouvelle remise "
        "(`Renvoi` = Complétée).",
        "- `edi invoices history N°_DE_DÉPÔT [--json]` montre chaque statut : date, producteur et rôle, "
        "motif, commentaire, mandat, compte rendu envoyé ; puis ce que chacun peut poser ensuite.",
        "",
        "## Par EDI",
        "",
        "- Un destinataire partenaire (`role = \"recipient\"`) reçoit ses factures en `FDE2001A` "
        "(CPPFacturePivot) et envoie ses statuts en `FEN1200A` (CPPStatut, bloc `CPPFactureStatuts`) ; "
        "chaque ligne est vérifiée par cette table (acteur : le destinataire), les lignes refusées "
        "figurent dans son compte rendu `CEN1200A` avec leur code `REJ_*`.",
        "- Le fournisseur recycle (après 04) ou complète (après 06) en renvoyant la facture par son "
        "opérateur : même fournisseur, numéro et date ; seules les données d'acheminement changent "
        "(recyclage) ou des pièces jointes s'ajoutent (complétude). Tout autre renvoi d'un numéro connu "
        "est un doublon ; le numéro d'une facture rejetée (05) reste pris.",
        "",
        "## Statuts non pris en charge",
        "",
        "Les statuts officiels 13 à 41 (circuits de validation, travaux) sont refusés (`REJ_RG`) :",
        "",
    ]
    lines += [f"- `{code}` {label}" for code, label in UNSUPPORTED.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render_markdown())
