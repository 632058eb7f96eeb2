"""SCRAM credentials and ACLs over the Kafka admin API (the confluent-kafka side of ``users``)."""

from __future__ import annotations

from confluent_kafka import KafkaException
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
from emostream.kafka.configuration import ClientConfig
from emostream.security.roles import AclSpec

SCRAM_ITERATIONS = 8192


def _error(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        return err.str() if hasattr(err, "str") else str(err)
    return str(exc)


class SecurityAdmin:
    """Users (SCRAM-SHA-512 credentials) and their ACLs; needs a super user's profile."""

    def __init__(self, client: ClientConfig, timeout_s: float = 15.0) -> None:
        self._client = client
        self._timeout = timeout_s
        self._admin = AdminClient(client.librdkafka(**{"socket.timeout.ms": int(timeout_s * 1000)}))

    def _wait(self, what: str, futures: object) -> list[object]:
        items = futures.values() if isinstance(futures, dict) else futures  # type: ignore[union-attr]
        try:
            return [f.result(timeout=self._timeout + 5) for f in items]  # type: ignore[union-attr]
        except Exception as exc:
            raise KafkaClientError(f"could not {what} at {self._client.bootstrap}: {_error(exc)}; "
                                   "is this the admin's security profile of a running secure cluster?") from exc

    def upsert_password(self, user: str, password: str) -> None:
        """Create or replace ``user``'s SCRAM-SHA-512 credential."""
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        self._wait(f"set the password of '{user}'", self._admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, info, password.encode())], request_timeout=self._timeout))

    def delete_password(self, user: str) -> bool:
        """Remove ``user``'s SCRAM-SHA-512 credential; False when there was none."""
        futs = self._admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)], request_timeout=self._timeout)
        try:
            self._wait(f"remove the password of '{user}'", futs)
        except KafkaClientError as exc:
            if "RESOURCE_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return False
            raise
        return True

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
