"""A secured node is the plaintext node with other listeners and more properties. Pure.

Clients (devices, workers, dashboards) use the client listener: ``SASL_SSL`` with
SCRAM-SHA-512 over TLS 1.2/1.3. Broker-to-broker and controller traffic use ``SSL`` with
client certificates required (mTLS): every node presents the cluster's broker certificate,
whose subject maps to the principal ``User:broker``. No password is involved between nodes,
and a stolen client password cannot reach those listeners, which stay on loopback locally.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from emostream.cluster.config import NodeSpec, with_client_listener
from emostream.security.ca import BROKER_CN, BROKER_OU, ORG
from emostream.security.profile import ADMIN_USER, SASL_MECHANISM, SCRAM_LOGIN_MODULE

BROKER_PRINCIPAL = "broker"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
TLS_PROTOCOLS = "TLSv1.3,TLSv1.2"


def secure_node(node: NodeSpec) -> NodeSpec:
    """The same node with a SASL_SSL client listener and SSL internal and controller listeners."""
    node = with_client_listener(node, replace(node.client, protocol="SASL_SSL"))
    return replace(node, internal=replace(node.internal, protocol="SSL"), controller=replace(node.controller, protocol="SSL"))


def broker_principal_rule() -> str:
    """``ssl.principal.mapping.rules``: the broker certificate's subject → ``broker``; others keep their DN."""
    return f"RULE:^CN={BROKER_CN},OU={BROKER_OU},O={ORG}$/{BROKER_PRINCIPAL}/,DEFAULT"


def secure_properties(node: NodeSpec, broker_pem: Path, ca_cert: Path) -> dict[str, str]:
    """Properties to add to ``server_properties`` for a secured node (``ClusterSettings.overrides``)."""
    client = f"listener.name.{node.client.name.lower()}"
    return {
        # One PEM key+chain and one PEM trust store for every SSL listener, in and out.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_cert),
        "ssl.enabled.protocols": TLS_PROTOCOLS,
        "ssl.protocol": "TLSv1.3",
        "ssl.endpoint.identification.algorithm": "https",
        # Internal and controller listeners: mTLS, the certificate names the principal.
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": broker_principal_rule(),
        # Client listener: SCRAM names the principal; a device may add a client certificate.
        f"{client}.ssl.client.auth": "requested",
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        f"{client}.sasl.enabled.mechanisms": SASL_MECHANISM,
        f"{client}.{SASL_MECHANISM.lower()}.sasl.jaas.config": f"{SCRAM_LOGIN_MODULE} required;",
        # Deny by default; only the admin and the nodes themselves bypass ACLs.
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER};User:{BROKER_PRINCIPAL}",
    }
