#!/usr/bin/env python3
"""Makes the conformance cases of hookline's verifiers: requests, and whether each provider's official library
accepts them.

For every scheme with an official Python library, a request is signed with that library, then varied (valid,
body tampered, another secret, a rotated secret, timestamps at and beyond the tolerance in both directions,
upper-case hex, malformed, duplicated and missing headers), and the same library, on a fixed clock, says
whether it accepts each one. `tests/conformance.rs` checks that hookline gives the same answer for every case,
except where the README says hookline is stricter on purpose. generate.mjs does the same for the JavaScript
libraries (GitHub, Shopify). Run from this folder (it writes <scheme>.json here):

    python3 -m venv /tmp/vec && /tmp/vec/bin/pip install stripe standardwebhooks svix slack_sdk twilio \\
        hubspot-api-client paddle-python-sdk
    /tmp/vec/bin/python generate.py
    (mkdir -p /tmp/npmvec && cd /tmp/npmvec && npm install @octokit/webhooks-methods @shopify/shopify-api) && \\
        cp generate.mjs /tmp/npmvec/ && OUT=$PWD node /tmp/npmvec/generate.mjs

The output depends only on the libraries' versions (recorded in each case): running it again reproduces the
committed files. The libraries are not needed to run the tests.
"""

import base64
import contextlib
import datetime as dt
import importlib
import json
from importlib.metadata import version
from unittest import mock
from urllib.parse import parse_qsl, urlencode

NOW = 1764234000  # 2025-11-27T09:00:00Z
BODY = '{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","note":"Zoë 🚀"}}}'


@contextlib.contextmanager
def clock(now):
    """Every library's clock reads `now` (seconds since the epoch)."""

    class Fixed(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.fromtimestamp(now, tz=tz)

    patches = [mock.patch("time.time", return_value=float(now))]
    for module in ("standardwebhooks.webhooks", "hubspot.utils.signature"):
        patches.append(mock.patch(f"{module}.datetime", Fixed))
    patches.append(mock.patch("paddle_billing.Notifications.Verifier.time", return_value=float(now)))
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def joined(headers):
    """The headers as a web framework hands them to a library: one value per name, repeated ones joined."""
    out = {}
    for name, value in headers:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def case(scheme, name, settings, headers, body, now, accepts, library, url=None):
    c = {"scheme": scheme, "case": name, "settings": settings, "headers": [list(h) for h in headers], "body": body,
         "now": now, "official": "accept" if accepts else "reject", "library": library}
    if url is not None:
        c["url"] = url
    return c


def secrets_toml(*values, extra=""):
    listed = ", ".join(f'{{ value = "{v}" }}' for v in values)
    return f"{extra}secrets = [{listed}]"


def variants(scheme, sign, verify, library, secret, other, tolerance, credential, timestamp=None, hex_marker=None,
             settings_extra="", url=None):
    """The cases of one scheme.

    sign(secret, body, ts) -> headers signed as the provider does; verify(headers, body, now, secret) -> bool, the
    official library's answer with its clock at `now`; `credential` the signature header; `timestamp` the header
    carrying the timestamp, if a separate one; `hex_marker` what comes before a hex signature in `credential`.
    """
    out = []
    settings = secrets_toml(secret, extra=settings_extra)

    def add(name, headers, body=BODY, now=NOW, settings=settings, verify_secret=secret):
        with clock(now):
            try:
                accepts = bool(verify(headers, body, now, verify_secret))
            except Exception:  # the libraries raise for what they refuse
                accepts = False
        out.append(case(scheme, name, settings, headers, body, now, accepts, library, url))

    signed = sign(secret, BODY, NOW)
    add("valid", signed)
    add("body tampered (a byte added)", signed, body=BODY + " ")
    add("another secret", sign(other, BODY, NOW))
    add("rotated secret: the older of two live secrets", sign(other, BODY, NOW),
        settings=secrets_toml(secret, other, extra=settings_extra), verify_secret=other)
    if tolerance is not None:
        add("exactly the tolerance old", signed, now=NOW + tolerance)
        add("one second older than the tolerance", signed, now=NOW + tolerance + 1)
        add("an hour old", signed, now=NOW + 3600)
        add("exactly the tolerance ahead", signed, now=NOW - tolerance)
        add("one second further ahead than the tolerance", signed, now=NOW - tolerance - 1)
        add("an hour ahead", signed, now=NOW - 3600)
    if hex_marker is not None:
        upper = [(k, v.split(hex_marker)[0] + hex_marker + v.split(hex_marker)[1].upper() if k == credential else v)
                 for k, v in signed]
        add("signature in upper-case hex", upper)
    add("signature header missing", [(k, v) for k, v in signed if k != credential])
    add("signature header garbage", [(k, "garbage" if k == credential else v) for k, v in signed])
    add("signature header empty", [(k, "" if k == credential else v) for k, v in signed])
    add("signature header sent twice", signed + [(k, v) for k, v in signed if k == credential])
    if timestamp is not None:
        add("timestamp header missing", [(k, v) for k, v in signed if k != timestamp])
        add("timestamp header not a number", [(k, "12ab" if k == timestamp else v) for k, v in signed])
    add("empty body", sign(secret, "", NOW), body="")
    return out


def dump(scheme, cases):
    with open(f"{scheme}.json", "w") as f:
        json.dump(cases, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{scheme}: {len(cases)} cases")


def stripe_cases():
    import stripe
    from stripe import WebhookSignature

    def sign(secret, body, ts):
        return [("stripe-signature", WebhookSignature.generate_signature_header(body, secret, timestamp=ts))]

    def verify(headers, body, now, secret):
        return WebhookSignature.verify_header(body, joined(headers).get("stripe-signature"), secret, tolerance=300)

    library = f"stripe {version('stripe')} WebhookSignature.verify_header"
    del stripe
    return variants("stripe", sign, verify, library, "whsec_conformance_new", "whsec_conformance_old", 300,
                    "stripe-signature", hex_marker="v1=")


def standard_cases(scheme, module, prefix, package):
    Webhook = importlib.import_module(module).Webhook
    new = "whsec_" + base64.b64encode(b"conformance secret, new").decode()
    old = "whsec_" + base64.b64encode(b"conformance secret, old").decode()

    def sign(secret, body, ts):
        sig = Webhook(secret).sign("msg_conformance", dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc), body)
        return [(f"{prefix}-id", "msg_conformance"), (f"{prefix}-timestamp", str(ts)), (f"{prefix}-signature", sig)]

    def verify(headers, body, now, secret):
        # Verification only: whether the body is JSON is the processor's question (a DLQ record), not this one.
        if package == "svix":
            Webhook(secret).verify(body, joined(headers))  # svix checks no JSON
        else:
            Webhook(secret).verify(body, joined(headers), json_parse=False)
        return True

    library = f"{package} {version(package)} Webhook.verify"
    return variants(scheme, sign, verify, library, new, old, 300, f"{prefix}-signature",
                    timestamp=f"{prefix}-timestamp")


def slack_cases():
    from slack_sdk.signature import Clock, SignatureVerifier

    def fixed(now):
        class Fixed(Clock):
            def now(self):
                return float(now)

        return Fixed()

    def sign(secret, body, ts):
        sig = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
        return [("x-slack-signature", sig), ("x-slack-request-timestamp", str(ts))]

    def verify(headers, body, now, secret):
        return SignatureVerifier(secret, clock=fixed(now)).is_valid_request(body, joined(headers))

    library = f"slack_sdk {version('slack_sdk')} SignatureVerifier.is_valid_request"
    return variants("slack", sign, verify, library, "8f742231b10e8888abcd99yyyzzz85a5",
                    "0ld5ecret0ld5ecret0ld5ecret0ld5e", 300, "x-slack-signature",
                    timestamp="x-slack-request-timestamp", hex_marker="v0=")


def twilio_cases():
    from twilio.request_validator import RequestValidator

    url = "https://hooks.example.com/webhooks/twilio?account=acme"
    form = urlencode({"MessageSid": "SM1", "MessageStatus": "delivered", "Body": "Héllo & good/bye"})

    def sign(secret, body, ts):
        params = dict(parse_qsl(body, keep_blank_values=True))
        sig = RequestValidator(secret).compute_signature(url, params)
        return [("x-twilio-signature", sig), ("content-type", "application/x-www-form-urlencoded")]

    def verify(headers, body, now, secret):
        params = dict(parse_qsl(body, keep_blank_values=True))
        return RequestValidator(secret).validate(url, params, joined(headers).get("x-twilio-signature", ""))

    library = f"twilio {version('twilio')} RequestValidator.validate"
    global BODY
    saved, BODY = BODY, form
    try:
        return variants("twilio", sign, verify, library, "conformance-auth-token", "older-auth-token", None,
                        "x-twilio-signature", settings_extra=f'public_url = "{url.split("?")[0]}"\n', url=url)
    finally:
        BODY = saved


def hubspot_cases():
    from hubspot.utils.signature import Signature

    url = "https://hooks.example.com/webhooks/hubspot?portal=3"

    def sign(secret, body, ts):
        ms = str(ts * 1000 + 250)
        return [("x-hubspot-signature-v3", Signature.get_signature(secret, body, "v3", url, "POST", ms)),
                ("x-hubspot-request-timestamp", ms)]

    def verify(headers, body, now, secret):
        h = joined(headers)
        return Signature.is_valid(h.get("x-hubspot-signature-v3", ""), secret, body, url, "POST", "v3",
                                  h.get("x-hubspot-request-timestamp"))

    library = f"hubspot-api-client {version('hubspot-api-client')} Signature.is_valid (v3)"
    return variants("hubspot", sign, verify, library, "yyyyyyyy-conformance-new", "yyyyyyyy-conformance-old", 300,
                    "x-hubspot-signature-v3", timestamp="x-hubspot-request-timestamp",
                    settings_extra=f'public_url = "{url.split("?")[0]}"\n', url=url)


def paddle_cases():
    from paddle_billing.Notifications.PaddleSignature import PaddleSignature
    from paddle_billing.Notifications.Secret import Secret
    from paddle_billing.Notifications.Verifier import Verifier

    class Headers:
        """Header names match in any case, as in the web frameworks Paddle's SDK is used with."""

        def __init__(self, headers):
            self.values = {k.lower(): v for k, v in joined(headers).items()}

        def get(self, key, default=None):
            return self.values.get(key.lower(), default)

    class Request:
        def __init__(self, headers, body):
            self.headers = Headers(headers)
            self.body = body.encode()

    def sign(secret, body, ts):
        h1 = PaddleSignature.calculate_hmac(secret, f"{ts}:{body}".encode()).hexdigest()
        return [("paddle-signature", f"ts={ts};h1={h1}")]

    def verify(headers, body, now, secret):
        return Verifier().verify(Request(headers, body), Secret(secret))

    library = f"paddle-python-sdk {version('paddle-python-sdk')} Verifier.verify"
    return variants("paddle", sign, verify, library, "pdl_ntfset_conformance_new", "pdl_ntfset_conformance_old", 5,
                    "paddle-signature", hex_marker="h1=")


if __name__ == "__main__":
    dump("stripe", stripe_cases())
    dump("standard_webhooks", standard_cases("standard_webhooks", "standardwebhooks", "webhook", "standardwebhooks"))
    dump("svix", standard_cases("svix", "svix.webhooks", "svix", "svix"))
    dump("slack", slack_cases())
    dump("twilio", twilio_cases())
    dump("hubspot", hubspot_cases())
    dump("paddle", paddle_cases())
