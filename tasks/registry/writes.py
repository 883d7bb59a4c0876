"""The store's write machinery: one transition applied inside a caller's transaction.

Mixed into :class:`tasks.registry.store.RegistryStore`; the public lifecycle methods live there.
Every helper runs on a connection inside a write transaction, so a publish and a reject (or a
promote and the retirement of the previous production version) commit together or not at all;
``_new_version`` is the one that opens its own (the write of ``publish`` and ``record_rejection``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from tasks.registry.errors import (
    FourEyesError,
    InvalidTransitionError,
    NotFoundError,
    PreconditionFailedError,
    StaleVersionError,
)
from tasks.registry.model import (
    ConfigState,
    ConfigValidationError,
    ConfigVersion,
    RegistryConfig,
    as_json_object,
    validate_use_case,
)
from tasks.registry.policy import PolicyBook, is_automated
from tasks.registry.reads import StoreReads
from tasks.registry.rows import check_text, check_version, now
from tasks.registry.schema import write_transaction

__all__ = ["UNSET", "StoreWrites"]

UNSET: Any = object()


class StoreWrites(StoreReads):
    """Write helpers of :class:`tasks.registry.store.RegistryStore` (mixed in)."""

    policies: PolicyBook | None

    # -- write helpers --------------------------------------------------------------------------

    def _audit_row(
        self, conn: Connection, use_case: str, version: int, action: str, **values: Any
    ) -> None:
        conn.execute(
            self.audit.insert().values(
                use_case=use_case, version=version, action=action, at=now(), **values
            )
        )

    def _locked_head(self, conn: Connection, use_case: str) -> Any:
        """The head row, locked until commit (PostgreSQL ``FOR UPDATE``; SQLite already holds
        the database write lock): writers of one use case queue here, and everything they read
        afterwards is what the previous writer committed."""
        query = sa.select(self.heads).where(self.heads.c.use_case == use_case).with_for_update()
        return conn.execute(query).first()

    def _bump(self, conn: Connection, head: Any, **values: Any) -> None:
        h = self.heads.c
        result = conn.execute(
            self.heads.update()
            .where(h.use_case == head.use_case, h.revision == head.revision)
            .values(revision=head.revision + 1, **values)
        )
        if result.rowcount != 1:
            raise StaleVersionError(f"{head.use_case}: changed concurrently; re-read and retry")

    def _set_state(self, conn: Connection, use_case: str, version: int, state: ConfigState) -> None:
        v = self.versions.c
        values: dict[str, Any] = {"state": state.value}
        if state in {ConfigState.APPROVED, ConfigState.PRODUCTION}:
            values["ever_approved"] = True
        conn.execute(
            self.versions.update()
            .where(v.use_case == use_case, v.version == version)
            .values(**values)
        )

    def _insert_version(
        self,
        conn: Connection,
        use_case: str,
        config: RegistryConfig,
        *,
        expected_version: int,
        actor: str,
        reason: str,
        run_id: str | None,
        evidence_json: str,
    ) -> int:
        head = self._locked_head(conn, use_case)
        latest = 0 if head is None else int(head.latest_version)
        if expected_version != latest:
            raise StaleVersionError(
                f"{use_case}: expected latest version {expected_version}, registry has {latest}"
            )
        version = latest + 1
        conn.execute(
            self.versions.insert().values(
                use_case=use_case,
                version=version,
                state=ConfigState.CANDIDATE.value,
                ever_approved=False,
                payload=json.dumps(config.to_dict(), sort_keys=True),
                checksum=config.checksum,
                created_at=now(),
                created_by=actor,
                reason=reason,
                run_id=run_id,
                evidence=evidence_json,
            )
        )
        if head is None:
            conn.execute(
                self.heads.insert().values(
                    use_case=use_case,
                    latest_version=version,
                    production_version=None,
                    candidate_version=version,
                    revision=1,
                )
            )
        else:
            self._bump(conn, head, latest_version=version, candidate_version=version)
        self._audit_row(
            conn, use_case, version, "publish", from_state=None, to_state="candidate",
            actor=actor, reason=reason,
        )  # fmt: skip
        return version

    def _checked_publish_args(
        self, use_case: str, config: RegistryConfig, expected_version: int, **texts: Any
    ) -> str:
        validate_use_case(use_case)
        if not isinstance(config, RegistryConfig):
            raise ConfigValidationError("config must be a RegistryConfig")
        if config.use_case != use_case:
            raise ConfigValidationError(f"config is for {config.use_case!r}, not {use_case!r}")
        check_version(expected_version, "expected_version", minimum=0)
        for name, value in texts.items():
            if name != "evidence" and (value is not None or name != "run_id"):
                check_text(value, name, limit=2000 if name == "reason" else 200)
        evidence = as_json_object(texts.get("evidence") or {}, "evidence")
        return json.dumps(evidence, sort_keys=True)

    def _after_write(self, use_case: str) -> None:
        """Called after every committed write of ``use_case`` (the store syncs its snapshot)."""

    def _new_version(
        self,
        use_case: str,
        config: RegistryConfig,
        *,
        expected_version: int,
        actor: str,
        reason: str,
        run_id: str | None,
        evidence: Mapping[str, Any] | None,
        rejected_by: str | None = None,
    ) -> ConfigVersion:
        """Check and insert the next version (a candidate, or rejected by ``rejected_by`` in the
        same transaction); then the snapshot follows."""
        evidence_json = self._checked_publish_args(
            use_case, config, expected_version, actor=actor, reason=reason, run_id=run_id,
            evidence=evidence,
        )  # fmt: skip
        stored_reason = (
            reason if rejected_by is None else f"proposed, then rejected by {rejected_by}"
        )
        try:
            with write_transaction(self.engine) as conn:
                version = self._insert_version(
                    conn, use_case, config, expected_version=expected_version, actor=actor,
                    reason=stored_reason, run_id=run_id, evidence_json=evidence_json,
                )  # fmt: skip
                if rejected_by is not None:
                    self._apply(
                        conn, use_case, version, action="reject",
                        allowed_from={ConfigState.CANDIDATE}, to_state=ConfigState.REJECTED,
                        actor=rejected_by, reason=reason,
                    )  # fmt: skip
        except IntegrityError as exc:  # a concurrent publisher inserted the same version first
            raise StaleVersionError(f"{use_case}: version {expected_version + 1} exists") from exc
        self._after_write(use_case)
        return self.get(use_case, version)

    def _check_four_eyes(self, conn: Connection, use_case: str, row: Any, actor: str) -> None:
        policy = None if self.policies is None else self.policies.for_use_case(use_case)
        if policy is None or not policy.four_eyes:
            return
        if is_automated(actor) and self._only_person_approved_configurations(conn, use_case, row):
            return  # a traffic plan over configurations a person already approved
        if actor == row.created_by:
            raise FourEyesError(
                f"{use_case} v{row.version}: four eyes: {actor!r} proposed it and cannot approve it"
            )
        if is_automated(actor):
            raise FourEyesError(
                f"{use_case} v{row.version}: four eyes: a person must approve, not {actor!r}"
            )

    def _only_person_approved_configurations(
        self, conn: Connection, use_case: str, row: Any
    ) -> bool:
        """Whether every arm's parameters of ``row`` were in a version approved before.

        Under four eyes every earlier approval of a new configuration was a person's (this rule
        admits no new configuration), so an automated approval of such a version only reweights
        traffic over what people have approved: exploration shares, rollout steps, rollbacks.
        """
        v = self.versions.c
        approved = conn.execute(
            sa.select(v.payload).where(
                v.use_case == use_case, v.ever_approved.is_(True), v.version != row.version
            )
        ).scalars()
        known = {_arm_params(payload) for payload in approved}
        seen: set[str] = set().union(*known) if known else set()
        return bool(seen) and _arm_params(row.payload) <= seen

    def _apply(
        self,
        conn: Connection,
        use_case: str,
        version: int,
        *,
        action: str,
        allowed_from: set[ConfigState],
        to_state: ConfigState,
        actor: str,
        reason: str,
        expected_production: Any = UNSET,
    ) -> None:
        head = self._locked_head(conn, use_case)
        row = self._version_row(conn, use_case, version) if head is not None else None
        if head is None or row is None:
            raise NotFoundError(f"use case {use_case!r} has no version {version}")
        current = ConfigState(row.state)
        if expected_production is not UNSET and head.production_version != expected_production:
            raise PreconditionFailedError(
                f"{use_case}: expected production version {expected_production}, "
                f"registry has {head.production_version}"
            )
        if current not in allowed_from or (action == "rollback" and not row.ever_approved):
            raise InvalidTransitionError(
                f"{use_case} v{version}: cannot {action} a {current.value} configuration"
            )
        if action == "approve":
            self._check_four_eyes(conn, use_case, row, actor)
        head_values: dict[str, Any] = {}
        previous = head.production_version
        if to_state is ConfigState.PRODUCTION:
            if previous is not None and previous != version:
                self._set_state(conn, use_case, previous, ConfigState.RETIRED)
                self._audit_row(
                    conn, use_case, previous, "retire", from_state="production",
                    to_state="retired", actor=actor,
                    reason=f"replaced by v{version} ({action}): {reason}",
                )  # fmt: skip
            head_values["production_version"] = version
        if head.candidate_version == version and to_state is not ConfigState.CANDIDATE:
            head_values["candidate_version"] = None
        self._set_state(conn, use_case, version, to_state)
        self._bump(conn, head, **head_values)
        self._audit_row(
            conn, use_case, version, action, from_state=current.value, to_state=to_state.value,
            actor=actor, reason=reason,
        )  # fmt: skip


def _arm_params(payload: str) -> frozenset[str]:
    """The parameter sets a stored version serves (its params and its arms'), as canonical JSON."""
    config = json.loads(payload)
    served = [config["params"], *(arm["params"] for arm in config.get("traffic", []))]
    return frozenset(json.dumps(params, sort_keys=True) for params in served)
