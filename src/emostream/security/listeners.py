"""A secured node's listeners and properties, as the security commands see them.

They are part of the broker config generator (:mod:`emostream.cluster.config`), which both
``kafka up --secure`` and ``kafka config --secure`` use; these names stay importable here.
"""

from emostream.cluster.config import (
    AUTHORIZER,
    BROKER_PRINCIPAL,
    DEFAULT_REAUTH_S,
    TLS_PROTOCOLS,
    broker_principal_rule,
    secure_node,
    secure_properties,
)

__all__ = ["AUTHORIZER", "BROKER_PRINCIPAL", "DEFAULT_REAUTH_S", "TLS_PROTOCOLS", "broker_principal_rule", "secure_node",
           "secure_properties"]
