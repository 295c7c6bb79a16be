"""The secondary: a second instance of production's version (`shadow_compare_secondary`). Compared requests are
also sent there, through the same sender, limits and memory budget as copies; a field in which production and the
secondary differ is noise for that endpoint from the first pair on (Diffy's primary, secondary and candidate)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from . import mappings
from .addresses import Address
from .mappings import Mapping
from .sender import Copy

SUFFIX = "\x00secondary"  # appended to the production flow's id: the secondary copy's context
LABEL = "/secondary"  # appended to the shadow Mapping's name in the metrics of secondary copies


@dataclasses.dataclass(frozen=True, slots=True)
class Secondary:
    name: str  # the production service it stands for; "" for every one
    address: Address
    scheme_given: bool


def parse(specs: Sequence[str]) -> tuple[Secondary, ...]:
    """`[NAME=][scheme://]HOST:PORT` entries; raises ValueError with a one-line message."""
    out = []
    for spec in specs:
        named = "=" in spec
        name, address, given = mappings.parse_service_override(spec if named else f"any={spec}")
        out.append(Secondary(name if named else "", address, given))
    return tuple(out)


def address_for(secondaries: Sequence[Secondary], production: Mapping | None, own: Address | None) -> Address | None:
    """The secondary of a production Mapping's service: the first entry naming it (as mapping_services names a
    service), else an entry without a name; None when there is none."""
    if production is None or own is None:
        return None
    for s in secondaries:
        if s.name and mappings.override_matches(s.name, production.service, production.namespace):
            return s.address if s.scheme_given else Address(own.scheme, s.address.host, s.address.port)
    for s in secondaries:
        if not s.name:
            return s.address if s.scheme_given else Address(own.scheme, s.address.host, s.address.port)
    return None


def copy_for(c: Copy, address: Address, host: str) -> Copy:
    """The copy `c` of a request, sent to the secondary instead: the Host production got, its own metric labels."""
    return dataclasses.replace(
        c, address=address, host=host, mapping=c.mapping + LABEL, service=str(address), context=f"{c.context}{SUFFIX}"
    )


def primary_key(context: object) -> str | None:
    """The production flow's id when `context` is a secondary copy's, else None."""
    s = str(context)
    return s[: -len(SUFFIX)] if s.endswith(SUFFIX) else None
