"""The JSON shape of a profile as the profile API returns it (times are epoch milliseconds)."""

from __future__ import annotations

from typing import Any

from flagbridge.profiles.model import FlagState, TestMark


def profile_document(traffic_type: str, key: str, flags: list[FlagState], mark: TestMark | None) -> dict[str, Any]:
    return {
        "trafficType": traffic_type,
        "key": key,
        "identityType": flags[0].identity_type if flags else None,
        "testUser": {
            "isTestUser": mark is not None,
            "rule": mark.rule if mark else None,
            "markedAt": mark.marked_at if mark else None,
            "expiresAt": mark.expires_at if mark else None,
        },
        "flags": {
            state.flag: {
                "treatment": state.treatment,
                "label": state.label,
                "version": state.version,
                "environment": state.environment,
                "environmentId": state.environment_id,
                "treatmentTime": state.current_time,
                "firstExposure": state.first_seen,
                "lastExposure": state.last_seen,
                "exposures": state.exposures,
                "history": [
                    {
                        "treatment": a.treatment,
                        "label": a.label,
                        "version": a.version,
                        "environment": a.environment,
                        "firstSeen": a.first_seen,
                        "lastSeen": a.last_seen,
                        "count": a.count,
                    }
                    for a in state.assignments
                ],
                "updatedAt": state.updated_at,
            }
            for state in sorted(flags, key=lambda s: s.flag)
        },
    }
