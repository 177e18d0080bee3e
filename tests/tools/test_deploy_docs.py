"""docs/deploy.md is a checklist whose facts are checked: the secrets table is the template's, the configuration
fields it says to change exist, its cost table's arithmetic is right and its counts are the template's."""

from __future__ import annotations

import re
from decimal import Decimal

from local.deploy_docs import DEPLOY_PAGE, render, secrets, secrets_table
from local.resources import TEMPLATE_PATH, load_template_file

PAGE = DEPLOY_PAGE.read_text(encoding="utf-8")
TEMPLATE = load_template_file(TEMPLATE_PATH)


def _count(resource_type: str) -> int:
    return sum(1 for resource in TEMPLATE["Resources"].values() if resource.get("Type") == resource_type)


def test_the_secrets_table_is_generated_from_the_template() -> None:
    assert render(PAGE, secrets_table(TEMPLATE)) == PAGE, "run `python -m local.deploy_docs`"
    rows = secrets(TEMPLATE)
    assert len(rows) == _count("AWS::SecretsManager::Secret")
    placeholders = {row["secret"] for row in rows if "placeholder" in row["after_deploy"]}
    assert {"SplitSdkKeySecret", "SplitAdminApiKeySecret"} <= placeholders
    for secret in placeholders:  # each placeholder has its put-secret-value line
        assert f"--secret-id <{secret}Arn> --secret-string" in PAGE


def test_the_configuration_fields_to_change_exist() -> None:
    from flagbridge.oracle.config import KillOptions
    from local.resources import ROOT

    shipped = (ROOT / "layers" / "shared" / "config" / "flagbridge.yaml").read_text(encoding="utf-8")
    section = PAGE[PAGE.index("## 2. Edit your configuration first") : PAGE.index("## 3. Build and deploy")]
    assert "`layers/shared/config/flagbridge.yaml` **is the deployment's configuration**" in section
    for path in ("identity_mapping.split_environments", "test_users.rules", "cdp.destinations", "oracle.tests"):
        assert f"`{path}`" in section
        leaf = path.rsplit(".", 1)[-1]
        assert re.search(rf"^\s*{leaf}:", shipped, re.MULTILINE), path
    assert "kill: {dry_run: true}" in section and "dry_run" in KillOptions.model_fields
    assert "workspace_id: demo-workspace" in shipped  # what the page warns about is what ships
    assert "`kill.workspace_id`" in section and "workspace_id" in KillOptions.model_fields


def test_the_checklist_has_every_step() -> None:
    for heading in ("Prerequisites", "Edit your configuration first", "Build and deploy", "The secrets",
                    "Connect Split and mParticle", "Smoke test", "Roll back, or remove", "What it costs"):  # fmt: skip
        assert re.search(rf"^## \d+\. {re.escape(heading)}", PAGE, re.MULTILINE), heading
    for command in ("make build", "sam deploy --guided", "sam delete --stack-name", "flagbridge --stack"):
        assert command in PAGE
    assert "curl -s " not in PAGE


def _money(text: str) -> Decimal:
    return Decimal(text.replace(",", "").replace("*", ""))


def test_the_cost_arithmetic() -> None:
    table = PAGE[PAGE.index("<!-- cost table") : PAGE.index("<!-- end of the cost table -->")]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| item")
    ]
    total = Decimal(0)
    by_item = {}
    for item, quantity, price, monthly in rows:
        if item == "**total**":
            assert _money(monthly) == total
            continue
        expected = (_money(quantity) * _money(price)).quantize(Decimal("0.01"))
        assert _money(monthly) == expected, item
        total += _money(monthly)
        by_item[item] = _money(quantity)
    assert by_item["Secrets Manager secrets"] == _count("AWS::SecretsManager::Secret")
    assert by_item["CloudWatch alarms"] == _count("AWS::CloudWatch::Alarm")
    posts = 8_640 * 30  # one webhook batch every 10 s, a 30-day month
    assert by_item["HTTP API requests (webhook)"] == posts
    assert by_item["SQS requests (send, receive, delete per message)"] == 3 * posts
    evaluations = 60 * 24 * 30
    assert by_item["Lambda requests (webhook, processor, oracle evaluator every minute)"] == 2 * posts + evaluations
    gb_seconds = (posts * Decimal("0.2") + posts * Decimal("0.5") + evaluations) * Decimal("0.5")
    assert by_item[next(item for item in by_item if item.startswith("Lambda compute"))] == gb_seconds
    assert "rate(1 minute)" in TEMPLATE_PATH.read_text(encoding="utf-8")


def test_no_page_counts_the_secrets_and_configuration_md_lists_each() -> None:
    from local.resources import ROOT

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8").lower()
        assert not re.search(r"\b(six|seven|eight|nine|ten|eleven|twelve|\d+) (secrets manager )?secrets\b", text), page
    configuration = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for row in secrets(TEMPLATE):
        assert f"| `{row['secret']}` |" in configuration, row["secret"]
