"""``flagbridge testers add|remove|list``: the tester registry of a stack (or of the local runner).

The command writes through the same domain service as the testers API
(:class:`flagbridge.testers.registry.TesterRegistry` on the DynamoDB adapter), so a change made here has the
same audit entry as one made over HTTP; the "who" is the caller's IAM principal (``iam:<ARN>`` from STS)
instead of a token name. It talks to DynamoDB rather than to the API because an operator already holds IAM
credentials for the stack (every other command uses them), IAM names a person where a shared token cannot,
and no token has to leave Secrets Manager.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from flagbridge_ops.cli import Context, Result, Subcommands, add_command, add_group

if TYPE_CHECKING:
    from flagbridge.testers.registry import TesterRegistry

_DURATION = re.compile(r"(\d{1,12})\s*([smhd])")  # 12 digits: far past the registry's 30 days, never an int too long
MAX_DURATION_TEXT = 64
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(commands: Subcommands) -> None:
    actions = add_group(
        commands,
        "testers",
        summary="the tester registry: add, remove, list testers",
        description=(
            "Testers registered at run time, until they expire: a registered traffic type and key is a tester for\n"
            "the CDP router (its events go to Split, never to analytics) and marks its profile from its\n"
            "impressions. Every change is audited with your IAM principal, the time and the reason."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev testers add user qa-7 --for 2h --reason 'checkout test QA-142'",
            "flagbridge --stack flagbridge-dev testers list",
        ],
    )
    add = add_command(
        actions,
        "add",
        add_tester,
        summary="register a tester until a time",
        description=(
            "Register TRAFFIC_TYPE KEY as a tester until --expires-at (ISO-8601 with a zone, or epoch seconds)\n"
            "or for --for (30m, 2h, 7d); at most 30 days. Registering again replaces the expiry and the reason."
        ),
        examples=[
            "flagbridge --stack flagbridge-dev testers add user qa-7 --for 2h --reason 'checkout test QA-142'",
            "flagbridge testers add user qa-7 --expires-at 2026-12-01T18:00:00Z --reason 'release check'",
        ],
    )
    _add_ids(add)
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--expires-at", help="ISO-8601 time with a zone, or epoch seconds")
    when.add_argument("--for", dest="duration", help="a duration from now: 90s, 30m, 2h, 7d")
    add.add_argument("--reason", required=True, help="why this user is a tester (kept in the audit trail)")
    remove = add_command(
        actions,
        "remove",
        remove_tester,
        summary="unregister a tester now",
        description="Remove TRAFFIC_TYPE KEY from the registry now; the audit trail keeps who removed it and why.",
        examples=["flagbridge --stack flagbridge-dev testers remove user qa-7 --reason 'test finished'"],
    )
    _add_ids(remove)
    remove.add_argument("--reason", help="why (kept in the audit trail; default 'removed')")
    listing = add_command(
        actions,
        "list",
        list_testers,
        summary="the registered testers that have not expired",
        description="Every registered tester that has not expired, in traffic type and key order.",
        examples=["flagbridge --stack flagbridge-dev testers list", "flagbridge --json testers list --limit 500"],
    )
    listing.add_argument("--limit", type=int, default=1000, help="at most N testers (default 1000)")


def _add_ids(parser: Any) -> None:
    parser.add_argument("traffic_type", metavar="TRAFFIC_TYPE", help="the Split traffic type, e.g. user")
    parser.add_argument("key", metavar="KEY", help="the Split key (the CDP identity it maps to)")


def _registry(ctx: Context) -> TesterRegistry:
    from flagbridge.testers.registry import TesterRegistry
    from flagbridge.testers.store import DynamoDBTesterStore
    from flagbridge_ops.errors import CliError

    table = ctx.resources.settings.testers_table
    if not table:
        raise CliError("no tester registry table: set TESTERS_TABLE or pass --stack")
    store = DynamoDBTesterStore(ctx.clients.get("dynamodb"), table)
    return TesterRegistry(store, segment=_segment_sync(ctx, store))


def _segment_sync(ctx: Context, store: Any) -> Any:
    """With ``testers.segments`` configured: the Split segment follows the change, with the stack's Admin API
    credential (``SPLIT_ADMIN_API_KEY_SECRET``, or the stack output) when this shell can read it; without it the
    registration is stored ``pending`` and the stack's reconcile adds it."""
    from flagbridge.testers import registry
    from flagbridge.testers.segment import SegmentSync

    settings = ctx.resources.settings
    targets = ctx.resources.config.testers.segments
    if not targets:
        return None
    client = None
    if settings.split_admin_api_key_secret:
        from flagbridge.oracle.split_admin import SplitAdminClient, admin_http

        secrets = ctx.clients.get("secretsmanager")
        secret_id = settings.split_admin_api_key_secret
        client = SplitAdminClient(
            admin_http(),
            settings.split_admin_api_url,
            lambda: str(secrets.get_secret_value(SecretId=secret_id)["SecretString"]),
            auth=ctx.resources.config.split_admin.auth,
            attempts=3,
            budget_seconds=5.0,
        )

    def warn(message: str, extra: dict[str, Any]) -> None:
        ctx.err.write(f"warning: {message} ({extra.get('environment')}/{extra.get('segment')})\n")

    return SegmentSync(targets, client, store, lambda: registry._now(), warn)


def _actor(ctx: Context) -> str:
    """``iam:<ARN>`` of the credentials in use: the audit trail's "who"."""
    return "iam:" + str(ctx.clients.get("sts").get_caller_identity()["Arn"])


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``7d`` or ``1h30m`` as seconds."""
    from flagbridge_ops.errors import UsageError

    compact = text.strip().lower()
    parts = _DURATION.findall(compact) if len(compact) <= MAX_DURATION_TEXT else []
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact.replace(" ", ""):
        raise UsageError(f"--for must be a duration like 90s, 30m, 2h or 7d, not {text[:MAX_DURATION_TEXT]!r}")
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _refused(exc: Exception, option: str = "--expires-at") -> Exception:
    """The registry's refusal in the command's words: the option, not the API's field name."""
    from flagbridge.testers.registry import InvalidTesterError
    from flagbridge_ops.errors import UsageError

    if not isinstance(exc, InvalidTesterError):
        return exc
    return UsageError(exc.message.replace("expiresAt", option))


def add_tester(ctx: Context) -> Result:
    from flagbridge.testers.registry import MAX_REGISTRATION_SECONDS, InvalidTesterError
    from flagbridge_ops.errors import UsageError

    args = ctx.args
    if args.expires_at is None and parse_duration(args.duration) > MAX_REGISTRATION_SECONDS:
        raise UsageError(
            f"--for {args.duration} is longer than a registration may last ({MAX_REGISTRATION_SECONDS // 86400}d): "
            "register for less and add the tester again before it expires"
        )
    expires: Any = args.expires_at if args.expires_at is not None else time.time() + parse_duration(args.duration)
    registry = _registry(ctx)
    try:
        registration = registry.register(args.traffic_type, args.key, expires, args.reason, _actor(ctx))
    except InvalidTesterError as exc:
        raise _refused(exc, "--expires-at" if args.expires_at is not None else "--for") from exc
    if registration.segment is not None:  # stored pending; the sync may have added the key since
        stored = registry.active([registration.user_id]).get(registration.user_id)
        registration = stored or registration
    document = registration.document()
    if not ctx.json:
        ctx.out.write(
            f"registered {args.traffic_type} {args.key} as a tester until {document['expiresAt']}"
            f" (by {registration.registered_by})\n"
        )
        if registration.segment == "synced":
            ctx.out.write("its key is in the Split segment (testers.segments)\n")
        elif registration.segment == "pending":
            ctx.out.write("its Split segment update is pending: the stack's reconcile adds it (testers.segments)\n")
    return {"tester": document}


def remove_tester(ctx: Context) -> Result:
    from flagbridge.testers.registry import InvalidTesterError
    from flagbridge_ops.errors import CliError

    args = ctx.args
    registry = _registry(ctx)
    try:
        removed = registry.remove(args.traffic_type, args.key, _actor(ctx), args.reason)
    except InvalidTesterError as exc:
        raise _refused(exc) from exc
    if not removed:
        raise CliError(f"{args.traffic_type} {args.key} is not a registered tester")
    if not ctx.json:
        ctx.out.write(f"removed {args.traffic_type} {args.key} from the tester registry\n")
    return {"removed": {"trafficType": args.traffic_type, "key": args.key}}


def list_testers(ctx: Context) -> Result:
    from flagbridge.testers.registry import MAX_PAGE_SIZE
    from flagbridge_ops.errors import UsageError
    from flagbridge_ops.output import short, table

    if ctx.args.limit < 1:
        raise UsageError("--limit must be at least 1")
    registry = _registry(ctx)
    testers: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(testers) < ctx.args.limit:
        page = registry.page(min(MAX_PAGE_SIZE, ctx.args.limit - len(testers)), cursor)
        testers.extend(r.document() for r in page.registrations)
        cursor = page.cursor
        if cursor is None:
            break
    if not ctx.json:
        rows = [
            (t["trafficType"], t["key"], t["expiresAt"], short(t["registeredBy"], 40), short(t["reason"], 60))
            for t in testers
        ]
        ctx.out.write(table(rows, ("traffic type", "key", "expires", "by", "reason")) + "\n")
        ctx.out.write(f"{len(testers)} tester(s)" + (" (more: raise --limit)" if cursor else "") + "\n")
    return {"testers": testers, "truncated": cursor is not None}
