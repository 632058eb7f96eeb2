"""SCRAM credentials and ACLs over the Kafka admin API (the confluent-kafka side of ``users``).

:class:`AclSpec` is the rule as data (what :mod:`emostream.security.roles` computes);
:class:`SecurityAdmin` applies and reads such rules on a cluster.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from emostream.errors import KafkaClientError
from emostream.kafka.configuration import SCRAM_MECHANISM, ClientConfig
from emostream.kafka.errors import client_error, error_name

SCRAM_ITERATIONS = 8192
_SCRAM = ScramMechanism[SCRAM_MECHANISM.replace("-", "_")]
_ADMIN_FIX = "is this the admin's security profile of a running secure cluster?"
_NOT_FOUND = object()  # what _wait(missing_ok=True) gives for a RESOURCE_NOT_FOUND answer


@dataclass(frozen=True)
class AclSpec:
    """One ALLOW rule for a principal: resource type, name, pattern, operation (Kafka's names)."""

    resource: str  # TOPIC | GROUP | TRANSACTIONAL_ID | BROKER (the cluster)
    name: str
    pattern: str  # LITERAL | PREFIXED
    operation: str  # READ | WRITE | DESCRIBE | IDEMPOTENT_WRITE | ...

    def __str__(self) -> str:
        kind = "prefix " if self.pattern == "PREFIXED" else ""
        resource = "cluster" if self.resource == "BROKER" else self.resource.lower()
        return f"{self.operation} on {resource} {kind}'{self.name}'"


class SecurityAdmin:
    """Users (SCRAM-SHA-512 credentials) and their ACLs; needs a super user's profile."""

    def __init__(self, client: ClientConfig, timeout_s: float = 15.0) -> None:
        self._client = client
        self._timeout = timeout_s
        self._admin = AdminClient(client.librdkafka(**{"socket.timeout.ms": int(timeout_s * 1000)}))

    def _wait(self, what: str, futures: object, *, missing_ok: bool = False) -> list[object]:
        """The futures' results; with ``missing_ok`` a RESOURCE_NOT_FOUND answer gives ``_NOT_FOUND``."""
        items = futures.values() if isinstance(futures, dict) else futures  # type: ignore[union-attr]
        results: list[object] = []
        for fut in items:  # type: ignore[union-attr]
            try:
                results.append(fut.result(timeout=self._timeout + 5))
            except FutureTimeout as exc:
                raise KafkaClientError(f"could not {what} at {self._client.bootstrap}: no answer within "
                                       f"{self._timeout + 5:.0f}s; {_ADMIN_FIX}") from exc
            except Exception as exc:
                if missing_ok and error_name(exc) == "RESOURCE_NOT_FOUND":
                    results.append(_NOT_FOUND)
                    continue
                raise client_error(what, exc, bootstrap=self._client.bootstrap, fix=_ADMIN_FIX) from exc
        return results

    def upsert_password(self, user: str, password: str) -> None:
        """Create or replace ``user``'s SCRAM-SHA-512 credential."""
        info = ScramCredentialInfo(_SCRAM, SCRAM_ITERATIONS)
        self._wait(f"set the password of '{user}'", self._admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, info, password.encode())], request_timeout=self._timeout))

    def delete_password(self, user: str) -> bool:
        """Remove ``user``'s SCRAM-SHA-512 credential; False when there was none."""
        futs = self._admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, _SCRAM)], request_timeout=self._timeout)
        (result,) = self._wait(f"remove the password of '{user}'", futs, missing_ok=True)
        return result is not _NOT_FOUND

    def scram_users(self) -> list[str]:
        """Names of every user with a SCRAM credential."""
        fut = self._admin.describe_user_scram_credentials(request_timeout=self._timeout)
        (result,) = self._wait("list users", [fut])
        return sorted(result)  # type: ignore[arg-type]

    def create_acls(self, principal: str, specs: list[AclSpec]) -> None:
        """ALLOW ``specs`` for ``principal`` from any host."""
        bindings = [
            AclBinding(ResourceType[s.resource], s.name, ResourcePatternType[s.pattern], principal, "*",
                       AclOperation[s.operation], AclPermissionType.ALLOW)
            for s in specs
        ]
        self._wait(f"create ACLs for {principal}", self._admin.create_acls(bindings, request_timeout=self._timeout))

    def _filter(self, principal: str | None) -> AclBindingFilter:
        return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                                AclOperation.ANY, AclPermissionType.ANY)

    def acls(self, principal: str | None = None) -> list[tuple[str, AclSpec]]:
        """(principal, rule) for every ACL, or only those of ``principal``."""
        (bindings,) = self._wait("list ACLs", [self._admin.describe_acls(self._filter(principal), request_timeout=self._timeout)])
        return [(b.principal, AclSpec(b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name))
                for b in bindings]  # type: ignore[union-attr]

    def delete_acls(self, principal: str) -> int:
        """Delete every ACL of ``principal``; the number deleted."""
        deleted = self._wait(f"delete ACLs of {principal}", self._admin.delete_acls([self._filter(principal)], request_timeout=self._timeout))
        return sum(len(d) for d in deleted)  # type: ignore[arg-type]
