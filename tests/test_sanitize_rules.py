"""The secret rules: the labelled corpus, tokens generated from the issuers' documented
formats (made at run time, so no realistic secret sits in the repository), what
handoffs are full of and must not be flagged, and redaction of a text.

Assertion messages name a row or a rule, never a secret."""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.sanitize import redact_text, scan_text
from kodelyth_ecc.secretrules import (
    RULES_VERSION,
    entropy,
    find_secrets,
    fingerprint,
    looks_random,
    rule_ids,
)

CORPUS = Path(__file__).resolve().parent / "fixtures" / "secrets" / "corpus.jsonl"
RNG = random.Random(20261126)
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64URL = ALNUM + "_-"
B64 = ALNUM + "+/"


def rand(alphabet: str, n: int) -> str:
    """Random text with every class of ``alphabet`` present (as real tokens are)."""
    while True:
        text = "".join(RNG.choice(alphabet) for _ in range(n))
        classes = [set(text) & set(c) for c in (string.ascii_lowercase, string.ascii_uppercase)]
        wanted = [set(alphabet) & set(c) for c in (string.ascii_lowercase, string.ascii_uppercase)]
        if all(got or not want for got, want in zip(classes, wanted, strict=True)):
            return text


def corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start, m.end, m.rule) for m in scan_text(text)]


def covered(text: str, secret: str) -> bool:
    start = text.index(secret)
    return any(s <= start and e >= start + len(secret) for s, e, _ in spans(text))


# --- the corpus ----------------------------------------------------------------------


@pytest.mark.parametrize("row", corpus(), ids=lambda r: r["id"])
def test_corpus_row(row: dict[str, Any]) -> None:
    text, secret = row["text"], row["secret"]
    found = scan_text(text)
    if secret is None:
        assert found == [], f"{row['id']}: flagged {[m.rule for m in found]}"
        assert redact_text(text)[0] == text, row["id"]
        return
    caught = covered(text, secret)
    assert caught, f"{row['id']}: no finding covers the secret"
    redacted, matches = redact_text(text)
    leaked = secret in redacted
    assert not leaked, f"{row['id']}: the secret survives redaction"
    replaced = "[REDACTED:" in redacted and bool(matches)
    assert replaced, row["id"]


def test_corpus_whole_caught_and_clean() -> None:
    rows = corpus()
    assert sum(r["secret"] is not None for r in rows) >= 30
    missed = [r["id"] for r in rows if r["secret"] and not covered(r["text"], r["secret"])]
    flagged = [r["id"] for r in rows if r["secret"] is None and scan_text(r["text"])]
    assert (missed, flagged) == ([], [])


# --- documented formats --------------------------------------------------------------


def _jwt() -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return (
        f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'sub': rand(HEX, 8)})}.{rand(B64URL, 43)}"
    )


def _discord_bot() -> str:
    user_id = base64.b64encode(str(RNG.randrange(10**17, 10**18)).encode()).decode().rstrip("=")
    return f"{user_id}.{rand(B64URL, 6)}.{rand(B64URL, 38)}"


def _uuid() -> str:
    return str(uuid.UUID(int=RNG.getrandbits(128), version=4))


def _basic() -> str:
    return base64.b64encode(f"deploy:{rand(ALNUM, 16)}".encode()).decode()


# (rule, text around the secret with {s} for it, the secret). Made from the formats the
# issuers document: prefix, alphabet, length.
GENERATED: list[tuple[str, str, Callable[[], str]]] = [
    ("aws-access-key-id", "key id {s} in the logs", lambda: "AKIA" + rand(UPPER_ALNUM, 16)),
    ("aws-access-key-id", "temporary {s}", lambda: "ASIA" + rand(UPPER_ALNUM, 16)),
    ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY={s}", lambda: rand(B64, 40)),
    ("aws-secret-access-key", '"SecretAccessKey": "{s}",', lambda: rand(B64, 40)),
    ("aws-secret-access-key", "AWS Secret Access Key [None]: {s}", lambda: rand(B64, 40)),
    ("aws-session-token", "token {s}", lambda: "IQoJb3JpZ2luX2Vj" + rand(B64, 300)),
    ("gcp-api-key", "key={s}&q=1", lambda: "AIza" + rand(B64URL, 35)),
    ("gcp-oauth-client-secret", "client_secret {s}", lambda: "GOCSPX-" + rand(B64URL, 28)),
    ("gcp-oauth-access-token", "ya {s} ok", lambda: "ya29." + rand(B64URL, 120)),
    (
        "azure-storage-account-key",
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};EndpointSuffix=core.windows.net",
        lambda: rand(B64, 86) + "==",
    ),
    (
        "azure-sas-signature",
        "https://acme.blob.core.windows.net/c?sv=2022-11-02&sig={s}&se=1",
        lambda: rand(ALNUM, 20) + "%2B" + rand(ALNUM, 20) + "%3D",
    ),
    (
        "azure-ad-client-secret",
        "secret {s} end",
        lambda: rand(ALNUM, 3) + str(RNG.randrange(10)) + "Q~" + rand(ALNUM + "_-", 34),
    ),
    ("github-pat", "export GH_TOKEN={s}", lambda: "ghp_" + rand(ALNUM, 36)),
    ("github-oauth-token", "oauth {s}", lambda: "gho_" + rand(ALNUM, 36)),
    ("github-app-token", "app {s}", lambda: "ghs_" + rand(ALNUM, 36)),
    ("github-app-token", "user-to-server {s}", lambda: "ghu_" + rand(ALNUM, 36)),
    ("github-refresh-token", "refresh {s}", lambda: "ghr_" + rand(ALNUM, 76)),
    (
        "github-fine-grained-pat",
        "pat {s}",
        lambda: "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59),
    ),
    ("gitlab-token", "GITLAB {s}", lambda: "glpat-" + rand(B64URL, 20)),
    ("gitlab-token", "deploy {s}", lambda: "gldt-" + rand(B64URL, 20)),
    ("gitlab-token", "runner {s}", lambda: "glrt-" + rand(B64URL, 20)),
    ("gitlab-runner-registration-token", "reg {s}", lambda: "GR1348941" + rand(B64URL, 20)),
    ("bitbucket-app-password", "bb {s}", lambda: "ATBB" + rand(ALNUM, 32)),
    ("atlassian-api-token", "jira {s}", lambda: "ATATT3xFfGF0" + rand(B64URL, 180)),
    ("circleci-token", "circle {s}", lambda: "CCIPAT_" + rand(ALNUM, 22) + "_" + rand(HEX, 40)),
    ("circleci-credential", "CIRCLECI_TOKEN={s}", lambda: rand(HEX, 40)),
    ("travis-credential", "TRAVIS_API_TOKEN: {s}", lambda: rand(ALNUM, 22)),
    (
        "slack-token",
        "bot {s}",
        lambda: (
            "xoxb-" + rand("0123456789", 11) + "-" + rand("0123456789", 12) + "-" + rand(ALNUM, 24)
        ),
    ),
    (
        "slack-token",
        "user {s}",
        lambda: (
            "xoxp-" + rand("0123456789", 11) + "-" + rand("0123456789", 12) + "-" + rand(HEX, 32)
        ),
    ),
    (
        "slack-app-token",
        "app {s}",
        lambda: (
            "xapp-1-A" + rand(UPPER_ALNUM, 10) + "-" + rand("0123456789", 13) + "-" + rand(HEX, 64)
        ),
    ),
    (
        "slack-webhook",
        "post to {s} now",
        lambda: (
            "https://hooks.slack.com/services/T"
            + rand(UPPER_ALNUM, 8)
            + "/B"
            + rand(UPPER_ALNUM, 10)
            + "/"
            + rand(ALNUM, 24)
        ),
    ),
    (
        "discord-webhook",
        "hook {s}",
        lambda: (
            "https://discord.com/api/webhooks/" + rand("0123456789", 18) + "/" + rand(B64URL, 68)
        ),
    ),
    ("discord-bot-token", "DISCORD bot login with {s}", _discord_bot),
    ("telegram-bot-token", "bot {s}", lambda: rand("123456789", 10) + ":AA" + rand(B64URL, 33)),
    ("twilio-api-key", "sid {s}", lambda: "SK" + rand(HEX, 32)),
    ("twilio-account-sid", "account {s}", lambda: "AC" + rand(HEX, 32)),
    ("twilio-credential", "TWILIO_AUTH_TOKEN={s}", lambda: rand(HEX, 32)),
    ("sendgrid-api-key", "sg {s}", lambda: "SG." + rand(B64URL, 22) + "." + rand(B64URL, 43)),
    ("mailgun-api-key", "mg {s}", lambda: "key-" + rand(HEX, 32)),
    ("mailchimp-api-key", "mc {s}", lambda: rand(HEX, 32) + "-us" + str(RNG.randrange(1, 21))),
    ("stripe-secret-key", "stripe {s}", lambda: "sk_live_" + rand(ALNUM, 99)),
    ("stripe-secret-key", "stripe test {s}", lambda: "sk_test_" + rand(ALNUM, 24)),
    ("stripe-restricted-key", "rk {s}", lambda: "rk_live_" + rand(ALNUM, 24)),
    ("stripe-webhook-secret", "whsec {s}", lambda: "whsec_" + rand(ALNUM, 32)),
    ("square-token", "square {s}", lambda: "sq0atp-" + rand(B64URL, 22)),
    ("square-token", "square oauth {s}", lambda: "sq0csp-" + rand(B64URL, 43)),
    ("square-access-token", "square {s}", lambda: "EAAA" + rand(B64URL, 60)),
    (
        "paypal-braintree-access-token",
        "bt {s}",
        lambda: "access_token$production$" + rand(LOWER_ALNUM, 16) + "$" + rand(HEX, 32),
    ),
    ("shopify-token", "shop {s}", lambda: "shpat_" + rand(HEX, 32)),
    ("shopify-token", "shop {s}", lambda: "shpss_" + rand(HEX, 32)),
    ("openai-api-key", "OPENAI_API_KEY={s}", lambda: "sk-proj-" + rand(B64URL, 156)),
    ("openai-api-key", "svc {s}", lambda: "sk-svcacct-" + rand(B64URL, 74)),
    (
        "openai-api-key",
        "legacy {s}",
        lambda: "sk-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20),
    ),
    (
        "anthropic-api-key",
        "ANTHROPIC_API_KEY={s}",
        lambda: "sk-ant-api03-" + rand(B64URL, 93) + "AA",
    ),
    ("anthropic-api-key", "admin {s}", lambda: "sk-ant-admin01-" + rand(B64URL, 93) + "AA"),
    ("huggingface-token", "hf {s}", lambda: "hf_" + rand(string.ascii_letters, 34)),
    ("groq-api-key", "groq {s}", lambda: "gsk_" + rand(ALNUM, 52)),
    ("replicate-api-token", "r8 {s}", lambda: "r8_" + rand(ALNUM, 37)),
    ("cohere-credential", "COHERE_API_KEY={s}", lambda: rand(ALNUM, 40)),
    ("mistral-credential", 'mistral_api_key: "{s}"', lambda: rand(ALNUM, 32)),
    ("npm-token", "//registry.npmjs.org/:_authToken={s}", lambda: "npm_" + rand(ALNUM, 36)),
    ("pypi-token", "password = {s}", lambda: "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, 70)),
    ("rubygems-api-key", "gem {s}", lambda: "rubygems_" + rand(HEX, 48)),
    ("nuget-api-key", "nuget {s}", lambda: "oy2" + rand(LOWER_ALNUM, 43)),
    ("docker-hub-token", "docker login -p {s}", lambda: "dckr_pat_" + rand(B64URL, 27)),
    (
        "heroku-credential",
        "HEROKU_API_KEY={s}",
        lambda: "-".join(rand(HEX, n) for n in (8, 4, 4, 4, 12)),
    ),
    ("digitalocean-token", "do {s}", lambda: "dop_v1_" + rand(HEX, 64)),
    ("vault-token", "VAULT_TOKEN={s}", lambda: "hvs." + rand(B64URL, 90)),
    ("doppler-token", "doppler {s}", lambda: "dp.st.dev." + rand(ALNUM, 43)),
    ("linear-api-key", "linear {s}", lambda: "lin_api_" + rand(ALNUM, 40)),
    ("notion-token", "notion {s}", lambda: "secret_" + rand(ALNUM, 43)),
    ("notion-token", "notion {s}", lambda: "ntn_" + rand("0123456789", 11) + rand(ALNUM, 35)),
    ("postman-api-key", "postman {s}", lambda: "PMAK-" + rand(HEX, 24) + "-" + rand(HEX, 34)),
    ("grafana-token", "grafana {s}", lambda: "glc_" + rand(B64, 60) + "=="),
    (
        "grafana-service-account-token",
        "grafana {s}",
        lambda: "glsa_" + rand(ALNUM, 32) + "_" + rand(HEX, 8),
    ),
    ("new-relic-key", "nr {s}", lambda: "NRAK-" + rand(UPPER_ALNUM, 27)),
    ("sentry-token", "sentry {s}", lambda: "sntrys_" + rand(B64, 120)),
    ("sentry-token", "sentry {s}", lambda: "sntryu_" + rand(HEX, 64)),
    ("databricks-token", "dbx {s}", lambda: "dapi" + rand(HEX, 32)),
    (
        "age-secret-key",
        "age {s}",
        lambda: "AGE-SECRET-KEY-1" + rand("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
    ),
    ("jwt", "Authorization: Bearer {s}", _jwt),
    ("jwt", "cookie session={s};", _jwt),
    ("http-basic-auth", "Authorization: Basic {s}", _basic),
    ("http-bearer-token", 'curl -H "Authorization: Bearer {s}"', lambda: rand(ALNUM, 40)),
    (
        "netrc-password",
        "machine api.example.org login deploy password {s}",
        lambda: rand(ALNUM, 18),
    ),
    (
        "url-credentials",
        "mongo at {s}",
        lambda: f"mongodb+srv://app:{rand(ALNUM, 16)}@cluster0.mongodb.net/db?retryWrites=true",
    ),
    ("url-credentials", "REDIS_URL={s}", lambda: f"redis://:{rand(ALNUM, 20)}@cache:6379/0"),
    (
        "url-credentials",
        "clone {s}",
        lambda: f"https://x-access-token:{rand(ALNUM, 30)}@git.example.com/a/b.git",
    ),
    (
        "url-credentials",
        "amqp {s}.",
        lambda: f"amqp://svc:{rand(ALNUM, 14)}@mq.internal:5672/vhost",
    ),
    ("url-credentials", "mysql {s}", lambda: f"mysql://root:{rand(ALNUM, 12)}!@db:3306/app"),
    (
        "password-assignment",
        "Server=db;Database=app;User Id=sa;Password={s};",
        lambda: rand(ALNUM, 14) + "#",
    ),
    ("password-assignment", "export PGPASSWORD='{s}'", lambda: rand(ALNUM, 16)),
    ("password-assignment", '"password": "{s}"', lambda: rand(ALNUM, 12) + "!"),
    ("password-assignment", "db:\n  password: {s}\n", lambda: rand(ALNUM, 20)),
    ("password-assignment", "mysql --password={s} app", lambda: rand(ALNUM, 15)),
    ("password-assignment", "<password>{s}</password>", lambda: rand(ALNUM, 15)),
    ("secret-assignment", "client_secret = '{s}'", lambda: rand(ALNUM, 32)),
    ("secret-assignment", "X-Api-Key: {s}", lambda: rand(ALNUM, 32)),
    ("secret-assignment", "apiKey: '{s}',", lambda: rand(ALNUM, 24)),
    ("secret-assignment", "JWT_SIGNING_KEY={s}", lambda: rand(B64, 44)),
    # Added in review: formats and forms the first rule set missed.
    ("aws-access-key-id", "sts {s}", lambda: "ABIA" + rand(UPPER_ALNUM, 16)),
    ("aws-access-key-id", "cn {s}", lambda: "ACCA" + rand(UPPER_ALNUM, 16)),
    (
        "slack-token",
        "client {s}",
        lambda: (
            "xoxc-" + rand("0123456789", 12) + "-" + rand("0123456789", 13) + "-" + rand(HEX, 64)
        ),
    ),
    ("slack-token", "cookie d={s};", lambda: "xoxd-" + rand(ALNUM, 40) + "%2F" + rand(ALNUM, 60)),
    ("new-relic-key", "browser {s}", lambda: "NRJS-" + rand(HEX, 19)),
    ("new-relic-key", "license {s}", lambda: rand(HEX, 36) + "NRAL"),
    ("sentry-dsn", "dsn https://{s}@o4504.ingest.sentry.io/4505123 set", lambda: rand(HEX, 32)),
    (
        "twitter-bearer-token",
        "x {s}",
        lambda: "A" * 22 + rand(ALNUM, 20) + "%2F" + rand(ALNUM, 40) + "%3D" + rand(ALNUM, 30),
    ),
    (
        "mapbox-secret-token",
        "mb {s}",
        lambda: "sk.eyJ1Ijoi" + rand(B64URL, 50) + "." + rand(B64URL, 22),
    ),
    ("adafruit-io-key", "aio {s}", lambda: "aio_" + rand(ALNUM, 28)),
    (
        "dynatrace-token",
        "dt {s}",
        lambda: "dt0c01." + rand(UPPER_ALNUM, 24) + "." + rand(UPPER_ALNUM, 64),
    ),
    ("easypost-api-key", "ep {s}", lambda: "EZAK" + rand(ALNUM, 54)),
    ("flutterwave-key", "flw {s}", lambda: "FLWSECK_TEST-" + rand(HEX, 32) + "-X"),
    ("prefect-api-key", "prefect {s}", lambda: "pnu_" + rand(ALNUM, 36)),
    ("clojars-token", "clojars {s}", lambda: "CLOJARS_" + rand(LOWER_ALNUM, 60)),
    ("readme-api-key", "readme {s}", lambda: "rdme_" + rand(LOWER_ALNUM, 70)),
    ("scalingo-token", "scalingo {s}", lambda: "tk-us-" + rand(B64URL, 48)),
    ("frameio-token", "frameio {s}", lambda: "fio-u-" + rand(B64URL, 64)),
    ("infracost-api-key", "infracost {s}", lambda: "ico-" + rand(ALNUM, 32)),
    (
        "hubspot-token",
        "hubspot {s}",
        lambda: "pat-na1-" + "-".join(rand(HEX, n) for n in (8, 4, 4, 4, 12)),
    ),
    ("brevo-api-key", "brevo {s}", lambda: "xkeysib-" + rand(HEX, 64) + "-" + rand(ALNUM, 16)),
    ("typeform-token", "typeform {s}", lambda: "tfp_" + rand(B64URL, 44)),
    ("openshift-token", "oc login --token={s}", lambda: "sha256~" + rand(B64URL, 43)),
    (
        "plaid-access-token",
        "plaid {s}",
        lambda: "access-sandbox-" + "-".join(rand(HEX, n) for n in (8, 4, 4, 4, 12)),
    ),
    ("duffel-token", "duffel {s}", lambda: "duffel_test_" + rand(B64URL, 43)),
    (
        "harness-token",
        "harness {s}",
        lambda: "pat." + rand(B64URL, 22) + "." + rand(HEX, 24) + "." + rand(ALNUM, 20),
    ),
    (
        "cloudflare-origin-ca-key",
        "origin ca {s}",
        lambda: "v1.0-" + rand(HEX, 24) + "-" + rand(HEX, 146),
    ),
    ("adobe-client-secret", "adobe {s}", lambda: "p8e-" + rand(ALNUM, 32)),
    ("cli-password", "mysql -uroot -p'{s}' shop", lambda: rand(ALNUM, 14) + "#"),
    ("cli-password", "mysqldump -u root -p{s} shop > dump.sql", lambda: rand(ALNUM, 14)),
    ("cli-password", "sshpass -p {s} ssh deploy@host", lambda: rand(ALNUM, 14)),
    ("cli-password", "docker login -u ci -p {s} registry.example.com", lambda: rand(ALNUM, 24)),
    ("cli-password", "redis-cli -h cache -a {s} ping", lambda: rand(ALNUM, 20)),
    ("cli-password", "curl -u admin:{s} https://api.example.com", lambda: rand(ALNUM, 16)),
    ("cli-password", 'curl --user "admin:{s}" https://x.example', lambda: rand(ALNUM, 16)),
    ("secret-assignment", "env:\n  - name: API_KEY\n    value: {s}\n", lambda: rand(ALNUM, 32)),
    ("secret-assignment", '<add key="ApiKey" value="{s}" />', lambda: rand(ALNUM, 32)),
    ("secret-assignment", '{{"name": "API_TOKEN", "value": "{s}"}}', lambda: rand(ALNUM, 32)),
    # Rule set 3: formats a recall probe over issuers' documented formats found missing.
    ("sonarqube-token", "sonar {s}", lambda: "squ_" + rand(HEX, 40)),
    ("sonarqube-token", "sonar {s}", lambda: "sqp_" + rand(HEX, 40)),
    ("sonarqube-token", "sonar {s}", lambda: "sqa_" + rand(HEX, 40)),
    ("figma-token", "figma {s}", lambda: "figd_" + rand(B64URL, 40)),
    ("jfrog-api-key", "jfrog {s}", lambda: "AKCp" + rand(ALNUM, 69)),
    ("jfrog-reference-token", "jfrog {s}", lambda: "cmVmdGtuOjAxOjE3" + rand(ALNUM, 48)),
    (
        "tailscale-key",
        "tailscale {s}",
        lambda: "tskey-auth-k" + rand(ALNUM, 10) + "CNTRL-" + rand(ALNUM, 33),
    ),
    ("sourcegraph-token", "sg {s}", lambda: "sgp_" + rand(HEX, 16) + "_" + rand(HEX, 40)),
    ("render-api-key", "render {s}", lambda: "rnd_" + rand(ALNUM, 32)),
    ("neon-api-key", "neon {s}", lambda: "napi_" + rand(LOWER_ALNUM, 64)),
    ("intercom-token", "intercom {s}", lambda: "dG9rOj" + rand(B64, 54) + "="),
    ("onepassword-token", "op {s}", lambda: "ops_eyJ" + rand(B64URL, 300)),
    ("launchdarkly-key", "ld {s}", lambda: "sdk-" + _uuid()),
    ("tencent-secret-id", "tencent {s}", lambda: "AKID" + rand(ALNUM, 32)),
    (
        "mercadopago-access-token",
        "mp {s}",
        lambda: f"APP_USR-{rand('0123456789', 16)}-{rand('0123456789', 6)}-{rand(HEX, 32)}-1234567",
    ),
    (
        "salesforce-access-token",
        "sf {s}",
        lambda: "00D" + rand(ALNUM, 12) + "!" + rand(ALNUM + ".", 96),
    ),
    ("elevenlabs-api-key", "xi {s}", lambda: "sk_" + rand(HEX, 48)),
    ("cerebras-api-key", "cerebras {s}", lambda: "csk-" + rand(LOWER_ALNUM, 48)),
    ("together-api-key", "together {s}", lambda: "tgp_v1_" + rand(B64URL, 43)),
    ("fireworks-api-key", "fireworks {s}", lambda: "fw_" + rand(ALNUM, 24)),
    ("resend-api-key", "resend {s}", lambda: "re_" + rand(ALNUM, 8) + "_" + rand(ALNUM, 24)),
    (
        "grafana-api-key",
        "grafana {s}",
        lambda: (
            "eyJrIjoi" + base64.b64encode(f'{rand(ALNUM, 32)}","n":"ci","id":1}}'.encode()).decode()
        ),
    ),
    (
        "django-secret-key",
        "SECRET_KEY = '{s}'",
        lambda: "django-insecure-" + rand(string.ascii_lowercase + "0123456789!@#%^&*(-_=+)", 50),
    ),
    ("discord-bot-token", "bot.run('{s}')", _discord_bot),
    (
        "azure-identifiable-key",
        "key {s} end",
        lambda: rand(B64, 76) + "+ASt" + rand(B64, 6) + "==",
    ),
    ("azure-identifiable-key", "cosmos {s}", lambda: rand(B64, 76) + "ACDb" + rand(B64, 6) + "=="),
    (
        "teams-webhook",
        "hook {s}",
        lambda: (
            f"https://outlook.office.com/webhook/{_uuid()}@{_uuid()}/IncomingWebhook/"
            f"{rand(HEX, 32)}/{_uuid()}"
        ),
    ),
    (
        "slack-token",
        "rotated {s}",
        lambda: "xoxe.xoxp-1-" + rand(ALNUM, 140),
    ),
    (
        "flyio-token",
        "Authorization: {s}",
        lambda: "FlyV1 fm2_" + rand(B64, 200) + ",fm2_" + rand(B64, 100),
    ),
    ("gitlab-token", "ci {s}", lambda: "glcbt-64_" + rand(ALNUM, 19) + "-"),
    # Secret-named variables the names missed.
    ("azure-credential", "AZURE_COSMOS_PRIMARY_KEY={s}", lambda: rand(B64, 86) + "=="),
    ("secret-assignment", "COSMOS_KEY={s}", lambda: rand(B64, 86) + "=="),
    (
        "azure-credential",
        "AZURE_DEVOPS_EXT_PAT={s}",
        lambda: rand("abcdefghijklmnopqrstuvwxyz234567", 52),
    ),
    ("secret-assignment", "ASANA_PAT={s}", lambda: f"1/{rand('0123456789', 16)}:{rand(HEX, 32)}"),
    ("datadog-credential", "DATADOG_APPLICATION_KEY={s}", lambda: rand(HEX, 40)),
    ("secret-assignment", "x-functions-key: {s}", lambda: rand(B64URL, 54) + "=="),
    ("pagerduty-credential", "PAGERDUTY_INTEGRATION_KEY={s}", lambda: rand(HEX, 32)),
    ("secret-assignment", "B2_APPLICATION_KEY={s}", lambda: "K005" + rand(B64, 27)),
    ("secret-assignment", '"identitytoken": "{s}"', lambda: rand(B64URL, 200)),
    ("secret-assignment", "VAULT_TOKEN={s}", lambda: "s." + rand(ALNUM, 24)),
    ("secret-assignment", "SECRET_KEY={s}", lambda: rand(ALNUM, 20) + "&" + rand(ALNUM, 20)),
    (
        "http-bearer-token",
        "Authorization: Bearer {s}",
        lambda: f"2/{rand(HEX, 16)}:{rand(HEX, 32)}",
    ),
    # Whole credentials: the connection string, the SAS URL, the JDBC URL.
    (
        "azure-storage-account-key",
        "conn {s} set",
        lambda: (
            "DefaultEndpointsProtocol=https;AccountName=acme;"
            f"AccountKey={rand(B64, 86)}==;EndpointSuffix=core.windows.net"
        ),
    ),
    (
        "azure-storage-account-key",
        "AZURE_SERVICEBUS_CONNECTION_STRING={s}",
        lambda: (
            "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=Root;"
            f"SharedAccessKey={rand(B64, 43)}="
        ),
    ),
    (
        "azure-sas-signature",
        "download {s} now",
        lambda: (
            "https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&sp=r&se=2030-01-01"
            f"&sig={rand(ALNUM, 40)}%3D"
        ),
    ),
    (
        "azure-sas-signature",
        "auth {s}",
        lambda: f"SharedAccessSignature sr=https%3A%2F%2Facme&sig={rand(ALNUM, 40)}%3D&se=1&skn=a",
    ),
    (
        "azure-sas-signature",
        "flow {s}",
        lambda: (
            f"https://prod-12.westus.logic.azure.com:443/workflows/{rand(HEX, 32)}/triggers/manual"
            f"/paths/invoke?api-version=2016-06-01&sv=1.0&sig={rand(B64URL, 43)}"
        ),
    ),
    (
        "jdbc-credentials",
        "url {s}",
        lambda: f"jdbc:postgresql://db:5432/app?user=app&password={rand(ALNUM, 18)}&ssl=true",
    ),
    (
        "jdbc-credentials",
        "SPRING_DATASOURCE_URL={s}",
        lambda: f"jdbc:sqlserver://db:1433;databaseName=app;user=sa;password={rand(ALNUM, 18)};",
    ),
    ("jdbc-credentials", "ora {s}", lambda: f"jdbc:oracle:thin:scott/{rand(ALNUM, 14)}@db:1521:X"),
]


@pytest.mark.parametrize(
    ("rule", "template", "make"), GENERATED, ids=[f"{g[0]}-{i}" for i, g in enumerate(GENERATED)]
)
def test_documented_format_is_caught(rule: str, template: str, make: Callable[[], str]) -> None:
    secret = make()
    text = f"Handoff notes.\n{template.format(s=secret)}\nNothing else.\n"
    caught = covered(text, secret)
    assert caught, f"{rule}: not caught in {template!r}"
    rules = sorted({r for s, e, r in spans(text)})
    assert rule in rules, f"{rule}: caught as {rules}"
    redacted, _ = redact_text(text)
    leaked = secret in redacted
    assert not leaked, f"{rule}: survives redaction"
    kept = redacted.startswith("Handoff notes.\n") and redacted.endswith("\nNothing else.\n")
    assert kept, f"{rule}: the text around the secret changed"


def test_generated_rules_exist() -> None:
    assert {g[0] for g in GENERATED} <= set(rule_ids())


def test_private_key_kinds() -> None:
    body = "\n".join(rand(B64, 64) for _ in range(6))
    for kind in ("RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", ""):
        block = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
        text = f"key:\n{block}\nrotate it"
        assert spans(text) == [(5, 5 + len(block), "private-key")], kind
    pgp = (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{body}\n=abcd\n"
        "-----END PGP PRIVATE KEY BLOCK-----"
    )
    assert spans(pgp) == [(0, len(pgp), "private-key")]
    # A service-account JSON pasted into a handoff: newlines escaped.
    escaped = body.replace("\n", "\\n")
    sa = f'"private_key": "-----BEGIN PRIVATE KEY-----\\n{escaped}\\n-----END PRIVATE KEY-----\\n",'
    redacted, _ = redact_text(sa)
    gone = escaped[:40] not in redacted and "PRIVATE KEY" not in redacted
    assert gone, "escaped service-account key survives"
    # Escaped and cut short (a JSON string truncated in a log): `\\n` lines count too.
    cut_escaped = f'"private_key": "-----BEGIN PRIVATE KEY-----\\n{escaped}'
    redacted, _ = redact_text(cut_escaped)
    gone = all(line not in redacted for line in body.splitlines())
    assert gone, "an escaped key cut short survives"
    # Cut short (a truncated transcript): the BEGIN line and the base64 lines after it.
    cut = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n[truncated]"
    redacted, _ = redact_text(cut)
    gone = body.splitlines()[-1] not in redacted and redacted.endswith("[truncated]")
    assert gone, "a key cut short survives"


def test_private_key_in_a_diff_keeps_lines_and_signs() -> None:
    body = [rand(B64, 64) for _ in range(4)]
    lines = ["+-----BEGIN RSA PRIVATE KEY-----", *("+" + b for b in body)]
    lines.append("+-----END RSA PRIVATE KEY-----")
    diff = "@@ -0,0 +1,7 @@\n" + "\n".join(lines) + "\n+after\n"
    redacted, matches = redact_text(diff)
    assert redacted.count("\n") == diff.count("\n")
    shape = redacted.splitlines()[1].startswith("+[REDACTED:private-key:")
    shape = shape and redacted.splitlines()[2:7] == ["+"] * 5
    assert shape, "diff lines of the key"
    leaked = any(b in redacted for b in body)
    assert not leaked, "key lines survive"
    # The same key outside a diff has the same fingerprint.
    plain = "\n".join(line[1:] for line in lines)
    assert scan_text(plain)[0].fingerprint == matches[0].fingerprint


# --- what handoffs are full of -------------------------------------------------------

NEGATIVES = [
    "Rebased onto 9fceb02d0ae598e95dc970b74767f19372d61af8 and re-ran the suite.",
    "Merged a3f1c9e (sha 0d1c4f6b2e8a9d7c3b5a1e0f9d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4e3d2c1b0a).",
    "Request id 1b4e28ba-2fa1-11d2-883f-0016d3cca427 failed;"
    " trace 7c9e6679-7425-40de-944b-e07fc1f90ae7.",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  dist/app.whl",
    '"integrity": "sha512-7L8ySmfAQ0Y5nDwQ7V9mJz3H0mYyH7j3mKkH2X5J9K1yUwHqX8B8fJcQd5p2xw=="',
    "pip install --require-hashes pkg==1.0"
    " --hash=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "image: ghcr.io/acme/api"
    "@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "md5 d41d8cd98f00b204e9800998ecf8427e, crc32 8587d865",
    "password = os.environ['DB_PASSWORD']",
    'token = os.environ.get("GITHUB_TOKEN")',
    "api_key = settings.STRIPE_API_KEY",
    "secret = process.env.JWT_SECRET",
    'db_password = getenv("DB_PASSWORD")',
    "PASSWORD: ${{ secrets.DB_PASSWORD }}",
    'export GITHUB_TOKEN="$(gh auth token)"',
    'export API_KEY="${API_KEY:?set it}"',
    'curl -H "Authorization: Bearer $TOKEN" https://api.example.com/v1/items',
    "Authorization: Bearer <your-token>",
    "password: changeme",
    'api_key = "xxxxxxxxxxxxxxxxxxxxxxxx"',
    'aws_secret_access_key = "<your secret key>"',
    "The AWS docs use AKIAIOSFODNN7EXAMPLE as an example key.",
    "secret_key = None",
    "token: null",
    "max_tokens=4096, prompt_tokens: 1234, total_tokens = 98765432",
    "token_count = 123456789012",
    "secretName: db-credentials-production",
    "public_key = 'ssh-ed25519"
    " AAAAC3NzaC1lZDI1NTE5AAAAIGJm9v4Zk3sQdHc2rfn6yYkVbWqL2QmP5sQq1Z7fFpx2'",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----",
    "See https://github.com/acme/shop/pull/4380 and https://example.com:8443/a/b?c=d#e.",
    "git clone git@github.com:acme/shop.git; ssh://git@github.com/acme/shop.git",
    "postgres://localhost:5432/shop_test has no password",
    "postgres://postgres:postgres@localhost:5432/test (the CI default)",
    "amqp://guest:guest@localhost:5672/",
    'url = f"postgresql://{user}:{password}@{host}/{db}"',
    "The function resolveUserPermissionsForTenantContext is called twice.",
    "self.auth: MultiDomainBasicAuth = MultiDomainBasicAuth()",
    "password: _PasswordType | None = None",
    "token = get_token()  # never hard-coded",
    "const token = await fetchToken(session);",
    "Co-authored-by: Jane Doe <jane@example.com>",
    "Author: Jane Doe <jane@example.com>",
    "Ran pytest -q: 313 passed, 0 failed in 8.70s",
    "password_hash = bcrypt.hashpw(password, salt)",
    "cache_key = f'build-{sha}-linux-x64'; Cache key: build-5j2wtgpjnm8w-linux-x64",
    "src/kodelyth_ecc/commands/session_export.py:42 and tests/test_sanitize_rules.py:10",
    "Use the token endpoint: https://oauth2.googleapis.com/token",
    "key: value\nkeys: [a, b]\nmonkey-patch the session_key_prefix",
    "eyJmb28iOiJiYXIifQ is base64 of a JSON object without alg",
    "AKIA prefix keys must never be committed; use the vault.",
    "The secret is stored in Vault at secret/data/app; rotate with `vault kv put`.",
    "Set OPENAI_API_KEY in your shell, never in the repo.",
    "ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'",
    "commit_sha: 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "sk-learn-compat and task-runner-configuration-overrides-for-ci",
    # Added in review.
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf rotated",
    "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE...(redacted)\n-----END RSA PRIVATE KEY-----",
    "ANTHROPIC_API_KEY=sk-ant-api03-...",
    "docker run -p 8080:80 -p 443:443 nginx:1.27",
    "mysql -h db -P 3306 -u app -p shop",
    "mysql -uroot -p$MYSQL_ROOT_PASSWORD shop",
    'sshpass -p "$SSH_PASS" ssh deploy@host',
    "curl -u $USER:$TOKEN https://api.example.com; curl -u admin https://x.example",
    "docker login -u ci --password-stdin registry.example.com",
    "redis-cli -a changeme ping",
    "- name: LOG_LEVEL\n  value: debug-verbose-output-mode",
    "- name: API_KEY\n  valueFrom:\n    secretKeyRef: {name: api, key: key}",
    "pk.eyJ1IjoiYWNtZSIsImEiOiJjbGV4YW1wbGUifQ.public-mapbox-token-is-fine",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
    # Added with rule set 3.
    "The default password for the admin user is printed on first boot.",
    "Secret Manager holds it; the Kubernetes Secret is named db (kind: Secret).",
    "apiVersion: v1\nkind: ConfigMap\ndata:\n  url: aHR0cHM6Ly9leGFtcGxlLmNvbS9hcGkvdjE=\n",
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\nstringData:\n  password: <set-me>\n",
    "apiVersion: v1\nkind: Secret\ndata:\n  ca.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUI=\n",
    "file_path=/home/ci/app/src/main.py\nOUTPUT_PATH=./build/artifacts/release",
    "PAT_EXPIRY=2025-01-01\nGH_PAT=${{ secrets.GH_PAT }}\npat_scopes: repo,workflow",
    "jdbc:postgresql://db:5432/app?user=app&password=${DB_PASSWORD} and jdbc:h2:mem:testdb",
    "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=<your-account-key>;",
    "aws-sdk-2.1490.0, api-gateway-v2, sdk-generator-typescript-client-library-release",
    "sk-learn; fw_update_firmware_version_number_main; re_compile_pattern_cache_for_search",
    "Done! 00Dabc is the org! Ship it! MTIz.abc.def is not a bot token.",
    "Use `Authorization: FlyV1 <token>` after `fly tokens create`.",
    "token = settings.vault.client_token  # s.abc is the dev root token format",
]


@pytest.mark.parametrize("text", NEGATIVES, ids=[f"negative-{i}" for i in range(len(NEGATIVES))])
def test_not_flagged(text: str) -> None:
    assert spans(text) == []


# --- redaction of a text -------------------------------------------------------------


def test_placeholder_and_fingerprint() -> None:
    token = "ghp_" + rand(ALNUM, 36)
    text = f"a {token} b\nagain: {token}\n"
    redacted, matches = redact_text(text)
    fp = fingerprint(token.encode())
    assert len(fp) == 12
    expected = f"a [REDACTED:github-pat:{fp}] b\nagain: [REDACTED:github-pat:{fp}]\n"
    same = redacted == expected
    assert same, "placeholders"
    assert [(m.line, m.fingerprint) for m in matches] == [(1, fp), (2, fp)]
    assert redact_text(redacted) == (redacted, [])


def test_redaction_is_idempotent_on_mixed_text() -> None:
    pieces = [template.format(s=make()) for _, template, make in GENERATED]
    text = "\n".join(pieces) + "\n" + "\n".join(r["text"] for r in corpus())
    once, matches = redact_text(text)
    assert matches
    assert redact_text(once) == (once, [])


def test_allowed_fingerprint_is_left() -> None:
    token = "npm_" + rand(ALNUM, 36)
    fp = fingerprint(token.encode())
    redacted, matches = redact_text(f"x {token}", allow=[fp])
    kept = token in redacted and matches == []
    assert kept, "the allowed token was redacted"


def test_offsets_count_characters() -> None:
    token = "glpat-" + rand(B64URL, 20)
    text = f"naïve → {token} ✅"
    (match,) = scan_text(text)
    assert text[match.start : match.end] == token


def test_looks_random() -> None:
    assert looks_random(rand(ALNUM, 20).encode())
    for value in (b"changeme", b"hunter2", b"get_token()", b"os.environ['X']", b"${TOKEN}",
                  b"/etc/app/secret.pem", b"./certs/server.key", b"settings.API_KEY",
                  b"MultiDomainBasicAuth", b"correcthorsebatterystaple", b"None"):  # fmt: skip
        assert not looks_random(value), value
    assert entropy(b"aaaa") == 0.0


def test_rules_version_recorded() -> None:
    assert RULES_VERSION


def test_hostile_text_stays_linear() -> None:
    """Anchors by the million (no real token among them) cost a few steps each."""
    text = ("ghp_" * 50_000 + "-----BEGIN RSA PRIVATE KEY-----\n" * 20_000 + "://" * 50_000
            + "password= " * 50_000 + "eyJ." * 50_000 + "AKIA" * 50_000)  # fmt: skip
    found = find_secrets(text.encode())
    # A BEGIN line without key material is not a key; nothing else is anything.
    assert found == []
    # Each BEGIN line followed by base64 is a key cut short.
    line = "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n"
    assert len(find_secrets((line * 20_000).encode())) == 20_000


B8 = "aB3dE5fG"


@pytest.mark.parametrize(
    ("unit", "count"),
    [("tskey-auth-", 0), ("key-", 0), ("jdbc:", 0), ("00D" + "a" * 12 + "!", 0),
     ("MTk" + "A" * 22 + ".", 0),
     ("&sig=" + B8 * 5, 1), (";AccountKey=" + B8 * 8, 1), ("FlyV1 fm2_" + B8 * 6, 1),
     ("kind: Secret\ndata:\n  k: " + B8 * 4 + "\n", 17544)],
)  # fmt: skip
def test_dense_anchors(unit: str, count: int) -> None:
    """Rule set 3's anchors repeated for 1 MB (the benchmark times this; no timing
    here): nothing is made of the noise, one credential run is one finding however
    many keys it holds, and every Secret manifest's value is found once."""
    text = (unit * (1_000_000 // len(unit) + 1)).encode()
    assert len(find_secrets(text)) == count


def test_dense_keys_redact_once_and_stay_idempotent() -> None:
    """Many secrets close together: the re-check after redaction scans their
    neighbourhood as one window (it was one scan per secret)."""
    keys = [f"-----BEGIN PRIVATE KEY-----\n{rand(B64, 64)}\n" for _ in range(300)]
    text = "".join(keys)
    once, matches = redact_text(text)
    assert len(matches) == 300
    assert redact_text(once) == (once, [])


def test_putty_key_file() -> None:
    private = "\n".join(rand(B64, 64) for _ in range(4))
    key = (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
        f"Public-Lines: 2\n{rand(B64, 64)}\n{rand(B64, 20)}\n"
        f"Private-Lines: 4\n{private}\nPrivate-MAC: {rand(HEX, 64)}"
    )
    text = f"copied {key}\nthen rotated\n" * 2
    redacted, matches = redact_text(text)
    assert [m.rule for m in matches] == ["putty-private-key"] * 2
    gone = private.splitlines()[0] not in redacted and "Private-MAC" not in redacted
    assert gone, "PuTTY key survives"
    assert redacted.count("then rotated") == 2
    # Headers without a MAC, or a MAC without a header, are not a key.
    assert scan_text("Private-Lines: 4\n" + private) == []
    assert scan_text("PuTTY-User-Key-File-3: ssh-rsa\nPrivate-Lines: 1\nx") == []


def test_kubernetes_secret_manifest_values() -> None:
    """Every value of a Secret's data/stringData is secret, whatever its key is named;
    a ConfigMap beside it in the same file is not."""
    url = base64.b64encode(f"postgres://app:{rand(ALNUM, 16)}@db/app".encode()).decode()
    tls = base64.b64encode(f"-----BEGIN PRIVATE KEY-----\n{rand(B64, 64)}\n".encode()).decode()
    plain = rand(ALNUM, 20)
    cm = base64.b64encode(b"https://example.com/api/v1").decode()
    text = (
        f"apiVersion: v1\ndata:\n  DATABASE_URL: {url}\n  tls.key: {tls}\nkind: Secret\n"
        f"stringData:\n  config: '{plain}'\n---\nkind: ConfigMap\ndata:\n  url: {cm}\n"
    )
    for secret in (url, tls, plain):
        assert covered(text, secret), "a Secret's value is not caught"
    assert not covered(text, cm), "a ConfigMap value is flagged"
    as_json = json.dumps({"kind": "Secret", "data": {"url": url}, "metadata": {"name": "x"}})
    assert covered(as_json, url), "a JSON Secret's value is not caught"


def test_whole_run_keeps_the_variable_name() -> None:
    key = rand(B64, 86) + "=="
    conn = f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={key};"
    text = f"AZURE_STORAGE_CONNECTION_STRING={conn}\n"
    assert spans(text) == [(32, 32 + len(conn), "azure-storage-account-key")]
    # Two connection strings in one text, the later one found first: both.
    other = conn.replace(key, rand(B64, 86) + "==")
    both = f"a {conn} and sig=x b {other}"
    assert covered(both, conn) and covered(both, other)


def test_window_rule_sees_tokens_among_dense_keywords() -> None:
    """Keywords close together share their scanned windows, without losing a token
    that straddles where one window ended."""
    bot = _discord_bot()
    text = "discord " * 120 + bot + " discord" * 120
    assert covered(text, bot)
