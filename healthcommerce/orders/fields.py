"""The order's fields as one table (docs/style.md 15): each ``OrderField`` row says, for one ``Order`` column, where
pre-fill reads it, whether the clinician may edit it (and with which form fields, on which card), whether signing
needs it, where it sits in the signed content, and whether it is PHI.

Everything else is derived from ``FIELDS``, read when it is used: the FHIR ``_elements`` pre-fill asks for
(``elements``) and the default SMART scopes (``scopes``, registered with ``ehr.scopes`` by ``orders.apps``), the
values a read fills (``prefill_values``, checked against the column's ``max_length``), the clinician's form
(``orders.forms.OrderForm``) and its cards in ``templates/orders/form.html``, the editable columns (``editable``),
what signing still needs (``orders.services.order_missing_fields``), the signed content (``order_content``), the
purge's blanking (``phi_blank``), the support role's masking (``orders.admin.OrderAdmin.phi_fields``) and the extra
lines of the signed order's page (``shown``), and, for orders that arrive by themselves, the HL7 v2 element each
column is read from (``hl7``: ``hl7_values`` reads a message, ``hl7_fields`` lists them for the interface
specification; readers in ``orders.hl7read``). ``orders.checks`` fails ``manage.py check`` when a PHI row's column is
not encrypted or an encrypted column has no PHI row. Adding a field: docs/extending.md "Add a pre-fill field".

Sources: FHIR R4 search ``_elements``; HL7 v2.5.1 chapters 2-4 and 6 (the ``hl7`` column); SMART App Launch 2.2
"Scopes and Launch Context"; CMS Standard Written Order elements; HIPAA
164.312(a)(2)(iv) (encryption) and 164.514(d) (minimum necessary).
"""

import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Field

from healthcommerce.core.validators import validate_birth_date
from healthcommerce.orders import extract, hl7read
from healthcommerce.orders.models import Order


class Phi(enum.Enum):
    """Whether a column is PHI: ``ENCRYPTED`` columns are encrypted at rest, blanked by the purge and masked for
    support; an ``IDENTIFIER`` (the patient's FHIR id) is only masked: it stays plain and searchable (ADR 0016)."""

    NO = "no"
    ENCRYPTED = "encrypted"
    IDENTIFIER = "identifier"


@dataclass(frozen=True)
class Source:
    """One resource type pre-fill reads (``orders.prefill``): the SMART scope it needs and the elements the read
    itself uses (status, subject ...), before those the rows add."""

    scope: str
    elements: tuple[str, ...] = ()


# In the order the default scopes list them (ehr.scopes.default_scopes).
SOURCES = {
    "Patient": Source("patient/Patient.rs"),
    "DeviceRequest": Source(
        "patient/DeviceRequest.rs",
        ("status", "intent", "code", "subject", "authoredOn", "requester", "insurance", "parameter"),
    ),
    "ServiceRequest": Source(
        "patient/ServiceRequest.rs",
        ("status", "intent", "code", "subject", "authoredOn", "requester", "insurance", "quantity"),
    ),
    "Coverage": Source("patient/Coverage.rs", ("status", "beneficiary")),
    "Practitioner": Source("user/Practitioner.rs"),
}


@dataclass(frozen=True)
class Prefilled:
    """Where pre-fill reads a column: ``resource`` (``Patient``, ``Coverage``: the patient's first active one, or
    ``Practitioner``: the launch's user), the top-level ``elements`` it needs, and ``read``, which returns the
    column's value from the resource's JSON and an ``extract.Notes`` (lenient: a warning, never an exception)."""

    resource: str
    elements: tuple[str, ...]
    read: Callable[[dict[str, Any], extract.Notes], Any]


@dataclass(frozen=True)
class Hl7Source:
    """Where an HL7 v2 order message carries a column: ``element`` as an interface analyst reads it (``"PID-5"``,
    ``"RQD-2 or OBR-4"``) and ``read``, which returns the value from an ``orders.hl7read.Hl7View`` and an
    ``extract.Notes`` (lenient: a warning naming the element, never an exception)."""

    element: str
    read: Callable[[hl7read.Hl7View, extract.Notes], Any]


@dataclass(frozen=True)
class Edit:
    """How the clinician edits a column on the order form: the ``card`` it sits on (``item``: drawn by hand with
    the product's checks; ``patient``, ``ship_to``, ``contact``: looped), and either ``form`` (one form field named
    like the column) or ``parts`` (several form fields, with ``initial`` and ``value`` to convert); ``choices``, for a
    choice field, gives its options for one order (the site's payers)."""

    card: str
    form: Callable[[], forms.Field] | None = None
    parts: Callable[[], dict[str, forms.Field]] | None = None
    initial: Callable[[Order], dict[str, Any]] | None = None
    value: Callable[[dict[str, Any], Order], Any] | None = None
    choices: Callable[[Order], list[tuple[str, str]]] | None = None


@dataclass(frozen=True)
class Required:
    """Signing needs the column: ``label`` completes "Before signing, add ..."; ``lacks`` (default: the column is
    empty) returns the label to show, "" when the order has it; ``fix`` names the form field to correct (default: the
    column's own, "" when the form cannot fix it)."""

    label: str
    lacks: Callable[[Order], str] | None = None
    fix: str | None = None


@dataclass(frozen=True)
class OrderField:
    """One row: the ``Order`` column ``name`` and what each part of the app does with it.

    ``hl7`` is where an HL7 v2 order message carries it (``Hl7Source``; None: not read from one).
    ``signed`` is its dotted key in ``order_content`` ("" when the signature does not cover it; keep existing keys,
    or already-signed orders' ``content_hash`` changes), ``signed_as`` its value there when not the column's own
    (dates as ISO text). ``shown`` labels its own line on the signed order's page.
    """

    name: str
    prefill: Prefilled | None = None
    hl7: Hl7Source | None = None
    edit: Edit | None = None
    required: Required | None = None
    signed: str = ""
    signed_as: Callable[[Order], Any] | None = None
    phi: Phi = Phi.NO
    shown: str = ""

    def form_fields(self) -> dict[str, forms.Field]:
        """Return the new form fields that edit this column (``{}`` when it is not editable)."""
        if self.edit is None:
            return {}
        if self.edit.parts is not None:
            return self.edit.parts()
        return {self.name: self.edit.form()} if self.edit.form is not None else {}

    def form_initial(self, order: Order) -> dict[str, Any]:
        """Return the form's initial values for this column from ``order``."""
        if self.edit is not None and self.edit.initial is not None:
            return self.edit.initial(order)
        return {self.name: getattr(order, self.name)}

    def form_value(self, data: dict[str, Any], order: Order) -> Any:
        """Return the column's new value from the form's ``cleaned_data``."""
        if self.edit is not None and self.edit.value is not None:
            return self.edit.value(data, order)
        return data[self.name]

    def lacking(self, order: Order) -> str:
        """Return the ``Required`` label when ``order`` cannot be signed for want of this column, else ""."""
        if self.required is None:
            return ""
        if self.required.lacks is not None:
            return self.required.lacks(order)
        value = getattr(order, column(self.name).attname)
        return self.required.label if value in ("", None, {}, []) else ""

    def fix_field(self) -> str:
        """Return the form field to correct when the column is lacking ("" when the form cannot fix it)."""
        if self.required is not None and self.required.fix is not None:
            return self.required.fix
        return next(iter(self.form_fields()), "")


def _birth_date_lacks(order: Order) -> str:
    if order.patient_birth_date is None:
        return "the patient's date of birth"
    try:
        validate_birth_date(order.patient_birth_date)
    except forms.ValidationError:
        return "a real date of birth (the one on file is in the future or before 1900)"
    return ""


SHIP_TO_REQUIRED = ("line", "city", "state", "postal_code")
_SHIP_TO_PARTS = ("city", "state", "postal_code")


def _ship_to_parts() -> dict[str, forms.Field]:
    return {
        "line1": forms.CharField(max_length=200, label="Address line 1"),
        "line2": forms.CharField(max_length=200, label="Address line 2", required=False),
        "city": forms.CharField(max_length=100),
        "state": forms.CharField(max_length=50),
        "postal_code": forms.CharField(max_length=20, label="ZIP / postal code"),
    }


def _ship_to_initial(order: Order) -> dict[str, Any]:
    lines = list(order.ship_to.get("line") or [])
    parts = {name: order.ship_to.get(name, "") for name in _SHIP_TO_PARTS}
    return {"line1": lines[0] if lines else "", "line2": " ".join(lines[1:]), **parts}


def _ship_to_value(data: dict[str, Any], order: Order) -> dict[str, Any]:
    lines = [line for line in (data["line1"], data["line2"]) if line]
    parts = {name: data[name] for name in _SHIP_TO_PARTS}
    return {"line": lines, **parts, "country": order.ship_to.get("country") or "US"}


class ProductChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """The product picker: a ``ModelChoiceField`` over the active products that takes the draft's own product
    (``known``, loaded with the order) without a query when that is the one submitted (issue 22: sign)."""

    known: Any = None

    def to_python(self, value: Any) -> Any:
        """Return ``known`` when ``value`` is its primary key and it is still active; else look it up."""
        known = self.known
        if known is not None and known.is_active and value not in self.empty_values and str(value) == str(known.pk):
            return known
        return super().to_python(value)


def _product_field() -> forms.Field:
    from healthcommerce.catalog.models import Product

    return ProductChoiceField(
        queryset=Product.objects.filter(is_active=True), required=True, empty_label="— pick a product —"
    )


def _product_signed(order: Order) -> dict[str, str]:
    product = order.product
    return {"sku": product.sku if product else "", "hcpcs": product.hcpcs_code if product else ""}


def _signer_lacks(order: Order) -> str:
    lacking = not order.practitioner_reference or not order.practitioner_name
    return "the signing practitioner (launch as a practitioner)" if lacking else ""


PAYER_REQUIRED = "the patient's payer (the chart's coverage was not recognised)"
SELF_PAY = "self_pay"  # the payer picker's "No insurance: self-pay"


def _payer_field() -> forms.Field:
    return forms.ChoiceField(choices=[], required=False, label="Payer")


def _payer_choices(order: Order) -> list[tuple[str, str]]:
    """The payer picker's options at the order's site: the site's active payers (``site_payers``; the order's own
    payer too when it is no longer offered), then self-pay; a prompt first only while the chart's coverage is not
    recognised and nothing was picked (signing then needs a choice)."""
    from healthcommerce.catalog.selectors import site_payers

    payers = site_payers(order.site)
    if order.payer is not None and order.payer not in payers:
        payers.append(order.payer)
    prompt = [("", "— pick the patient's payer —")] if _payer_lacks(order) or not payers else []
    return [*prompt, *((str(p.pk), p.name) for p in payers), (SELF_PAY, "No insurance: self-pay")]


def _payer_initial(order: Order) -> dict[str, Any]:
    """Pre-select the matched or picked payer; self-pay when the chart has no coverage or the clinician chose it;
    the prompt when the chart's coverage was not recognised."""
    if order.payer_id is not None:
        return {"payer": str(order.payer_id)}
    if order.coverage_status in ("", "self_pay"):
        return {"payer": SELF_PAY}
    return {"payer": ""}


def _payer_value(data: dict[str, Any], order: Order) -> Any:
    """The payer record the picker names: None for self-pay; no choice (the prompt) changes nothing."""
    from healthcommerce.catalog.models import Payer

    chosen = data.get("payer") or ""
    if not chosen or chosen == str(order.payer_id):
        return order.payer
    return None if chosen == SELF_PAY else Payer.objects.get(pk=chosen)


def _coverage_value(data: dict[str, Any], order: Order) -> str:
    """The coverage status the picker makes: ``self_pay``; ``matched`` when it keeps the matched payer, else
    ``picked``; no choice (the prompt) changes nothing (``not_recognised`` stays, and signing needs a choice)."""
    chosen = data.get("payer") or ""
    if not chosen:
        return order.coverage_status
    if chosen == SELF_PAY:
        return "self_pay"
    kept = order.coverage_status == "matched" and str(order.payer_id) == chosen
    return "matched" if kept else "picked"


def _payer_lacks(order: Order) -> str:
    """A clinician's order whose chart coverage was not recognised needs a payer picked (or self-pay); an order
    signed in the EHR (intake) goes on, and the patient's quote says the clinic will confirm."""
    lacking = order.source == Order.Source.APP and order.coverage_status == "not_recognised" and order.payer_id is None
    return PAYER_REQUIRED if lacking else ""


def _payer_signed(order: Order) -> dict[str, str]:
    """``payer.name``: the payer record's name, else the chart's payer text ("" for self-pay); ``payer.payer_id``,
    only when the record has a clearinghouse payer id (so an order without one signs the content it always did)."""
    payer = order.payer
    if payer is None:
        return {"name": "" if order.coverage_status == "self_pay" else order.payer_name}
    return {"name": payer.name} | ({"payer_id": payer.payer_id} if payer.payer_id else {})


FIELDS: tuple[OrderField, ...] = (
    OrderField("reference", signed="reference"),
    OrderField("version", signed="version"),
    OrderField("site", signed="site", signed_as=lambda order: order.site.iss),
    OrderField(
        "patient_fhir_id",
        hl7=Hl7Source("PID-3 (the CX-5 type FHIR repetition)", hl7read.patient_fhir_id),
        signed="patient.fhir_id",
        phi=Phi.IDENTIFIER,
    ),
    OrderField("placer_order_number", hl7=Hl7Source("ORC-2 or OBR-2", hl7read.placer_order_number)),
    OrderField("request_reference", signed="request.reference"),
    OrderField(
        "request_system",
        hl7=Hl7Source("RQD-2 or OBR-4 (coding system)", hl7read.request_system),
        signed="request.system",
    ),
    OrderField("request_code", hl7=Hl7Source("RQD-2 or OBR-4", hl7read.request_code), signed="request.code"),
    OrderField("request_display", hl7=Hl7Source("RQD-2 or OBR-4 (text)", hl7read.request_display)),
    OrderField(
        "product",
        edit=Edit("item", form=_product_field, initial=lambda order: {"product": order.product_id}),
        required=Required("a product (the requested code is not in the catalog: pick one)"),
        signed="item",
        signed_as=_product_signed,
    ),
    OrderField(
        "quantity",
        hl7=Hl7Source("RQD-5, TQ1-2, ORC-7 or OBR-27", hl7read.quantity),
        edit=Edit("item", form=lambda: forms.IntegerField(min_value=1, max_value=99)),
        required=Required(
            "a quantity of at least 1", lacks=lambda order: "a quantity of at least 1" if order.quantity < 1 else ""
        ),
        signed="item.quantity",
    ),
    OrderField("order_date", signed="order_date"),
    OrderField(
        "patient_name",
        prefill=Prefilled("Patient", ("name",), extract.resource_name),
        hl7=Hl7Source("PID-5", hl7read.patient_name),
        edit=Edit("patient", form=lambda: forms.CharField(max_length=300, label="Patient name")),
        required=Required("the patient's name"),
        signed="patient.name",
        phi=Phi.ENCRYPTED,
    ),
    OrderField(
        "patient_birth_date",
        prefill=Prefilled("Patient", ("birthDate",), extract.birth_date),
        hl7=Hl7Source("PID-7", hl7read.birth_date),
        edit=Edit(
            "patient",
            form=lambda: forms.DateField(
                label="Date of birth", widget=forms.DateInput(attrs={"type": "date"}), validators=[validate_birth_date]
            ),
        ),
        required=Required("the patient's date of birth", lacks=_birth_date_lacks),
        signed="patient.birth_date",
        phi=Phi.ENCRYPTED,
    ),
    OrderField(
        "ship_to",
        prefill=Prefilled("Patient", ("address",), extract.patient_address),
        hl7=Hl7Source("PID-11", hl7read.ship_to),
        edit=Edit("ship_to", parts=_ship_to_parts, initial=_ship_to_initial, value=_ship_to_value),
        required=Required(
            "a complete ship-to address",
            lacks=lambda order: (
                "" if all(order.ship_to.get(key) for key in SHIP_TO_REQUIRED) else "a complete ship-to address"
            ),
        ),
        signed="ship_to",
        phi=Phi.ENCRYPTED,
    ),
    OrderField(
        "contact_email",
        prefill=Prefilled("Patient", ("telecom",), extract.email),
        hl7=Hl7Source("PID-13 (the site's email repetition)", hl7read.contact_email),
        edit=Edit("contact", form=lambda: forms.EmailField(label="Patient email (the purchase link goes here)")),
        required=Required("the patient's email for the purchase link"),
        signed="contact.email",
        phi=Phi.ENCRYPTED,
    ),
    OrderField(
        "contact_phone",
        prefill=Prefilled("Patient", ("telecom",), extract.phone),
        hl7=Hl7Source("PID-13 or PID-14", hl7read.contact_phone),
        edit=Edit("contact", form=lambda: forms.CharField(max_length=40, required=False, label="Patient phone")),
        signed="contact.phone",
        phi=Phi.ENCRYPTED,
    ),
    OrderField("patient_language", prefill=Prefilled("Patient", ("communication",), extract.language)),
    OrderField(
        "payer_name",
        prefill=Prefilled("Coverage", ("payor", "class"), extract.payer_name),
        hl7=Hl7Source("IN1-4 (else IN1-3)", hl7read.payer_name),
    ),
    OrderField(
        "payer_keys",
        prefill=Prefilled("Coverage", ("payor",), extract.payer_keys),
        hl7=Hl7Source("IN1-3", hl7read.payer_keys),
    ),
    OrderField(
        "payer",
        edit=Edit("contact", form=_payer_field, initial=_payer_initial, value=_payer_value, choices=_payer_choices),
        required=Required(PAYER_REQUIRED, lacks=_payer_lacks),
        signed="payer",
        signed_as=_payer_signed,
    ),
    OrderField("coverage_status", edit=Edit("contact", parts=dict, initial=lambda order: {}, value=_coverage_value)),
    OrderField(
        "payer_member_id",
        prefill=Prefilled("Coverage", ("subscriberId",), extract.member_id),
        hl7=Hl7Source("IN1-36 (else IN1-49)", hl7read.member_id),
        edit=Edit("contact", form=lambda: forms.CharField(max_length=100, required=False, label="Member ID")),
        signed="payer.member_id",
        phi=Phi.ENCRYPTED,
    ),
    OrderField(
        "practitioner_reference",
        hl7=Hl7Source("ORC-12 (XCN-1 with XCN-9)", hl7read.practitioner_reference),
        signed="practitioner.reference",
    ),
    OrderField(
        "practitioner_name",
        prefill=Prefilled("Practitioner", ("name",), extract.resource_name),
        hl7=Hl7Source("ORC-12", hl7read.practitioner_name),
        required=Required("the signing practitioner (launch as a practitioner)", lacks=_signer_lacks, fix=""),
        signed="practitioner.name",
    ),
    OrderField(
        "practitioner_npi",
        prefill=Prefilled("Practitioner", ("identifier",), extract.npi),
        hl7=Hl7Source("ORC-12 (XCN-1 when XCN-9 or XCN-13 is NPI)", hl7read.practitioner_npi),
        signed="practitioner.npi",
    ),
    OrderField("signed_at", hl7=Hl7Source("ORC-9 or MSH-7", hl7read.signed_at)),
    OrderField("patient_ship_to", phi=Phi.ENCRYPTED),
    OrderField("ehr_ship_to", phi=Phi.ENCRYPTED),
)


def column(name: str) -> Field:
    """Return ``Order``'s model field ``name``; raises ``FieldDoesNotExist`` when it has none."""
    found = Order._meta.get_field(name)
    if not isinstance(found, Field):
        raise FieldDoesNotExist(name)
    return found


def field_row(name: str) -> OrderField:
    """Return the row of column ``name``; raises ``KeyError`` when the table has none."""
    for row in FIELDS:
        if row.name == name:
            return row
    raise KeyError(name)


def elements(resource: str) -> str:
    """Return the ``_elements`` value for a read of ``resource`` (FHIR R4 search 3.1.1.5.9): the source's own
    elements, then each row's, in table order, each once (``"name,birthDate,address,telecom,communication"``)."""
    own = SOURCES[resource].elements
    used = [
        element
        for row in FIELDS
        if row.prefill and row.prefill.resource == resource
        for element in row.prefill.elements
    ]
    return ",".join(dict.fromkeys([*own, *used]))


def scopes() -> list[str]:
    """Return the SMART scopes pre-fill's reads need, one per source in ``SOURCES`` order."""
    return [source.scope for source in SOURCES.values()]


def blank(name: str) -> Any:
    """Return the empty value of column ``name`` (its model default: ``""``, ``None`` for a date, ``{}``)."""
    return column(name).get_default()


def prefilled() -> list[OrderField]:
    """Return the rows pre-fill reads from the EHR."""
    return [row for row in FIELDS if row.prefill is not None]


def prefill_values(resource: str, data: dict[str, Any], notes: extract.Notes) -> dict[str, Any]:
    """Return ``{column: value}`` for every row read from ``resource``'s JSON ``data``, in table order.

    A text longer than its column's ``max_length`` is dropped with a warning ("gender is longer than 20 characters
    and was not used"), like every other element that does not fit (orders.extract).
    """
    values = {}
    for row in prefilled():
        if row.prefill is not None and row.prefill.resource == resource:
            values[row.name] = _fitting(row.name, row.prefill.read(data, notes), notes)
    return values


def hl7_fields() -> list[tuple[str, str]]:
    """Return ``[(column, HL7 v2 element)]`` of every row an order message fills, in table order (the interface
    specification prints it: ``[("patient_name", "PID-5"), ...]``)."""
    return [(row.name, row.hl7.element) for row in FIELDS if row.hl7 is not None]


def hl7_values(view: hl7read.Hl7View, warnings: list[str]) -> dict[str, Any]:
    """Return ``{column: value}`` for every row with an ``hl7`` source, read from ``view`` in table order, each
    value fitted to its column as ``prefill_values`` does; appends each warning once to ``warnings``, prefixed
    with the element (``"PID-7: birth date could not be read"``). A reader that fails outright costs only its
    column (its empty value, warning ``"<element> could not be read"``)."""
    values = {}
    for row in FIELDS:
        if row.hl7 is None:
            continue
        notes = extract.Notes(row.hl7.element)
        try:
            values[row.name] = _fitting(row.name, row.hl7.read(view, notes), notes)
        except extract.PARSE_ERRORS:
            notes.warn("could not be read")
            values[row.name] = blank(row.name)
        warnings.extend(warning for warning in notes.warnings if warning not in warnings)
    return values


def _fitting(name: str, value: Any, notes: extract.Notes) -> Any:
    limit = column(name).max_length
    if isinstance(value, str) and limit is not None and len(value) > limit:
        notes.warn(f"{name.replace('_', ' ')} is longer than {limit} characters and was not used")
        return blank(name)
    return value


def editable() -> tuple[str, ...]:
    """Return the columns the clinician may change on a draft (``orders.services.order_update_draft``)."""
    return tuple(row.name for row in FIELDS if row.edit is not None)


def phi_columns(*kinds: Phi) -> tuple[str, ...]:
    """Return the columns whose ``phi`` is one of ``kinds`` (default: any PHI)."""
    wanted = kinds or (Phi.ENCRYPTED, Phi.IDENTIFIER)
    return tuple(row.name for row in FIELDS if row.phi in wanted)


def phi_blank() -> dict[str, Any]:
    """Return what the purge writes into the encrypted PHI columns: each column's empty value."""
    return {name: blank(name) for name in phi_columns(Phi.ENCRYPTED)}


def _signed_value(row: OrderField, order: Order) -> Any:
    if row.signed_as is not None:
        return row.signed_as(order)
    value = getattr(order, row.name)
    return str(value) if value is None or isinstance(value, datetime.date) else value


def _put(content: dict[str, Any], path: str, value: Any) -> None:
    *parents, key = path.split(".")
    for parent in parents:
        content = content.setdefault(parent, {})
    if isinstance(content.get(key), dict) and isinstance(value, dict):
        content[key].update(value)
    else:
        content[key] = value


def order_content(order: Order) -> dict[str, Any]:
    """Return the canonical content a signature covers: each row's ``signed`` key with its value (JSON-ready;
    dates and an empty date as text, as signed since the first order)."""
    content: dict[str, Any] = {}
    for row in FIELDS:
        if row.signed:
            _put(content, row.signed, _signed_value(row, order))
    return content


def shown(order: Order) -> list[tuple[str, Any]]:
    """Return ``[(label, value)]`` of the rows with a line of their own on the signed order's page."""
    return [(row.shown, getattr(order, row.name)) for row in FIELDS if row.shown]
