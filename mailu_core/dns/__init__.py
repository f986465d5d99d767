"""DNS for a Mailu stack, pure part: records in normal form, desired records, plans, propagation tables.

No network here: providers and nameserver queries live in `mailu_flows.dns`.
"""

from mailu_core.dns.desired import desired_records, dkim_public_key_der, dkim_txt_value
from mailu_core.dns.plan import (
    ALWAYS_ALLOWED_CHANGES,
    MAX_CHANGE_FRACTION,
    Change,
    Conflict,
    Plan,
    TooMuchChange,
    UnsafePlan,
    apply_order,
    plan,
)
from mailu_core.dns.propagation import (
    Answer,
    Cell,
    Nameserver,
    PropagationTable,
    PropagationTimeout,
    Status,
    build_table,
    classify,
    mx_a_warnings,
)
from mailu_core.dns.records import (
    PROXIABLE_TYPES,
    Record,
    RecordKey,
    in_zone,
    normalize_name,
    normalize_txt,
    normalize_value,
    relative_name,
    split_rrset,
    txt_chunks,
    txt_presentation,
    txt_slot,
)

__all__ = [
    "ALWAYS_ALLOWED_CHANGES",
    "MAX_CHANGE_FRACTION",
    "PROXIABLE_TYPES",
    "Answer",
    "Cell",
    "Change",
    "Conflict",
    "Nameserver",
    "Plan",
    "PropagationTable",
    "PropagationTimeout",
    "Record",
    "RecordKey",
    "Status",
    "TooMuchChange",
    "UnsafePlan",
    "apply_order",
    "build_table",
    "classify",
    "desired_records",
    "dkim_public_key_der",
    "dkim_txt_value",
    "in_zone",
    "mx_a_warnings",
    "normalize_name",
    "normalize_txt",
    "normalize_value",
    "plan",
    "relative_name",
    "split_rrset",
    "txt_chunks",
    "txt_presentation",
    "txt_slot",
]
