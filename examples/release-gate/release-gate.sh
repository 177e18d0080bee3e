#!/bin/sh
# A release gate: deploy a treatment, register its testers, run a traffic plan against it as those testers, and
# fail the pipeline when the oracle's verdict is FAIL, with the verdict's JUnit XML and HTML report as artifacts.
# Copy it into your pipeline (examples/release-gate/README.md; github-actions.yml runs it in GitHub Actions).
#
# Needs: the `flagbridge` command (pip install .), curl, and the environment below. AWS credentials and region as
# the AWS CLI reads them (`flagbridge verdict` reads the verdicts table; FLAGBRIDGE_STACK names the stack).
#
# Exit status: 0 PASS (or not decided, unless REQUIRE_PASS=1), 1 FAIL, 2 not decided with REQUIRE_PASS=1,
# 3 a step failed (deploy, registration, the run itself), 64 a missing setting.
set -u

need() {
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "release-gate: set $1 ($2)" >&2
        exit 64
    fi
}
need DEPLOY_COMMAND "the command that deploys the treatment, e.g. 'sam deploy --no-confirm-changeset'"
need TARGET "the deployed service's base URL the plan's requests go to"
need PLAN "the traffic plan, e.g. checkout_plan.yaml (its oracle: {test: ...} names the verdict to gate on)"
need MODEL "the request model of the plan"
need ORACLE_TEST "the oracle test the plan feeds, e.g. new-checkout-health"
need TESTERS "tester keys, comma-separated (they must be testers by test_users.rules or registered below)"
need TESTERS_API "the tester registry API (stack output TestersApiUrl), e.g. https://.../testers"
need TESTERS_API_TOKEN "a testers API token (secret TestersApiTokenSecret; name it, e.g. {\"ci-pipeline\": ...})"
need FLAGBRIDGE_ORACLE_API_TOKEN "the oracle API's token (secret OracleApiTokenSecret): the run stops on FAIL"

FLAGBRIDGE=${FLAGBRIDGE:-flagbridge}
TRAFFIC_TYPE=${TRAFFIC_TYPE:-user}
REQUESTS=${REQUESTS:-1000}
RATE=${RATE:-50/s}
SEED=${SEED:-0}
TESTER_SECONDS=${TESTER_SECONDS:-7200}
VERDICT_WAIT=${VERDICT_WAIT:-120}
OUT=${OUT:-release-gate}
RUN_ID=${RUN_ID:-gate-$(date +%s)}
mkdir -p "$OUT" || exit 3

echo "release-gate 1/4: deploying the treatment: $DEPLOY_COMMAND"
if ! sh -c "$DEPLOY_COMMAND"; then
    echo "release-gate: the deploy failed" >&2
    exit 3
fi

echo "release-gate 2/4: registering testers $TESTERS until $TESTER_SECONDS s from now"
expires=$(($(date +%s) + TESTER_SECONDS))
for key in $(printf '%s' "$TESTERS" | tr ',' ' '); do
    answer=$(curl -sS -X PUT "$TESTERS_API/$TRAFFIC_TYPE/$key" \
        -H "Authorization: Bearer $TESTERS_API_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"expiresAt\": $expires, \"reason\": \"release gate $RUN_ID\"}" -w '\n%{http_code}') || exit 3
    status=$(printf '%s\n' "$answer" | tail -n 1)
    if [ "$status" != 200 ]; then
        echo "release-gate: registering $key answered HTTP $status: $(printf '%s\n' "$answer" | head -n 1)" >&2
        exit 3
    fi
    case $answer in
    *'"segment": "pending"'* | *'"segment":"pending"'*)
        echo "  $key registered; its Split segment update is pending (the reconcile adds it)" ;;
    *) echo "  $key registered" ;;
    esac
done

echo "release-gate 3/4: running $PLAN against $TARGET ($REQUESTS requests at $RATE)"
# --requests is the run's size today. When `--until-decided` lands (issue 18: runs that stop when the verdict is
# decided) --requests becomes its budget: add `--until-decided` on the next line.
# The run's summary (--json) is its proof of having run: exit status 1 is a FAIL or an error, and only a FAIL
# writes it. FLAGBRIDGE_STACK and BRIDGE expand to an option and its value, or to nothing.
rm -f "$OUT/run.json" "$OUT/verdict.xml" "$OUT/verdict.html"
"$FLAGBRIDGE" --json ${FLAGBRIDGE_STACK:+--stack "$FLAGBRIDGE_STACK"} traffic run "$PLAN" --model "$MODEL" \
    --target "$TARGET" --testers "$TESTERS" --requests "$REQUESTS" --rate "$RATE" --seed "$SEED" \
    --run-id "$RUN_ID" --report "$OUT/$RUN_ID.ndjson" --verdict-wait "$VERDICT_WAIT" \
    ${BRIDGE:+--bridge "$BRIDGE"} >"$OUT/run.json"
run_status=$?
if [ ! -s "$OUT/run.json" ]; then
    echo "release-gate: the traffic run failed before it finished (exit $run_status)" >&2
    exit 3
fi

echo "release-gate 4/4: the oracle's verdict of $ORACLE_TEST"
"$FLAGBRIDGE" ${FLAGBRIDGE_STACK:+--stack "$FLAGBRIDGE_STACK"} verdict "$ORACLE_TEST" \
    --junit "$OUT/verdict.xml" --html "$OUT/verdict.html"
verdict_status=$?
if [ ! -s "$OUT/verdict.xml" ]; then
    echo "release-gate: the verdict could not be read (exit $verdict_status)" >&2
    exit 3
fi

case $verdict_status in
0)
    echo "release-gate: PASS ($OUT/verdict.html)"
    exit 0 ;;
1)
    echo "release-gate: FAIL: the treatment failed its oracle test $ORACLE_TEST ($OUT/verdict.html)" >&2
    exit 1 ;;
esac
if [ "${REQUIRE_PASS:-0}" = 1 ]; then
    echo "release-gate: not decided (INCONCLUSIVE or NO_DATA) and REQUIRE_PASS=1 ($OUT/verdict.html)" >&2
    exit 2
fi
echo "release-gate: not decided (INCONCLUSIVE or NO_DATA); passing (REQUIRE_PASS=1 to fail instead)"
exit 0
