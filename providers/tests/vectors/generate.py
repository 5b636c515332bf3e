#!/usr/bin/env python3
"""Makes the signature test vectors of hookline's verifiers with the providers' own official libraries.

Each vector is a request exactly as the provider's library signs it; the script also checks that the same
library accepts it. Run from this folder (it writes <provider>.json here):

    python3 -m venv /tmp/vec && /tmp/vec/bin/pip install stripe standardwebhooks svix slack_sdk twilio \
        hubspot-api-client paddle-python-sdk
    /tmp/vec/bin/python generate.py
    (cd /tmp/npmvec && npm install @octokit/webhooks-methods @shopify/shopify-api) && \
        cp generate.mjs /tmp/npmvec/ && OUT=$PWD node /tmp/npmvec/generate.mjs

The libraries are not needed to run the tests: the vectors are committed.
"""

import base64
import hashlib
import json
from datetime import datetime, timezone

BODIES = [
    ("json", '{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1"}}}'),
    ("unicode and spacing", '{ "name" : "Zoë 🚀", "amount": 12345678901234567890, "nested": {"a": [1, 2, 3]} }\n'),
    ("escapes", '{"text":"line\\nbreak \\"quoted\\" \\u00e9","url":"https://example.com/?a=1&b=2"}'),
]
NOW = 1764234000  # 2025-11-27T09:00:00Z


def dump(provider, vectors):
    with open(f"{provider}.json", "w") as f:
        json.dump(vectors, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{provider}: {len(vectors)} vectors")


def stripe_vectors():
    import stripe

    out = []
    secret = "whsec_test_51NG8Du2eZvKYlo2CqZ4lYRzf"
    for i, (name, body) in enumerate(BODIES):
        ts = NOW - 60 * i
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
        out.append({"name": f"stripe {name}", "secret": secret, "body": body, "headers": {"stripe-signature": header}, "now": ts})
    # Rolling secrets: Stripe sends one v1 per live secret.
    other = "whsec_previous_secret_value"
    body = BODIES[0][1]
    h_new = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=NOW)
    h_old = stripe.WebhookSignature.generate_signature_header(body, other, timestamp=NOW)
    both = h_new + ",v1=" + h_old.split("v1=")[1]
    stripe.WebhookSignature.verify_header(body, both, secret, tolerance=None)
    out.append({"name": "stripe two v1 entries", "secret": secret, "body": body, "headers": {"stripe-signature": both}, "now": NOW})
    dump("stripe", out)


def standard_vectors(provider, module, prefix):
    wh_mod = __import__(module)
    out = []
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    wh = wh_mod.Webhook(secret)
    for i, (name, body) in enumerate(BODIES):
        ts = datetime.fromtimestamp(NOW + i, tz=timezone.utc)
        msg_id = f"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W{i}"
        sig = wh.sign(msg_id, ts, body)
        headers = {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(NOW + i), f"{prefix}-signature": sig}
        out.append({"name": f"{provider} {name}", "secret": secret, "body": body, "headers": headers, "now": NOW + i})
    # Several signatures, one of them from another secret and one of another version.
    other = wh_mod.Webhook("whsec_" + base64.b64encode(b"another secret key").decode())
    body = BODIES[0][1]
    ts = datetime.fromtimestamp(NOW, tz=timezone.utc)
    sig = "v1a,aWdub3JlZA== " + other.sign("msg_rot", ts, body) + " " + wh.sign("msg_rot", ts, body)
    headers = {f"{prefix}-id": "msg_rot", f"{prefix}-timestamp": str(NOW), f"{prefix}-signature": sig}
    out.append({"name": f"{provider} several signatures", "secret": secret, "body": body, "headers": headers, "now": NOW})
    dump(provider, out)


def slack_vectors():
    from slack_sdk.signature import SignatureVerifier

    out = []
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    bodies = BODIES + [("slash command form", "token=x&team_id=T1&command=%2Fdeploy&text=api+prod&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1")]
    for i, (name, body) in enumerate(bodies):
        ts = str(NOW + i)
        v = SignatureVerifier(secret)
        sig = v.generate_signature(timestamp=ts, body=body)
        out.append({"name": f"slack {name}", "secret": secret, "body": body, "headers": {"x-slack-signature": sig, "x-slack-request-timestamp": ts}, "now": NOW + i})
    dump("slack", out)


def twilio_vectors():
    from twilio.request_validator import RequestValidator
    from urllib.parse import urlencode

    out = []
    token = "12345"
    v = RequestValidator(token)
    forms = [
        ("sms status callback", "https://hooks.example.com/webhooks/twilio", {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15558675310", "From": "+15017122661", "Body": "Héllo & good/bye"}),
        ("query string and repeated names", "https://hooks.example.com/webhooks/twilio?account=acme&x=1", {"CallSid": "CA1", "Digits": "1234", "SpeechResult": ""}),
    ]
    for name, url, params in forms:
        body = urlencode(params)
        sig = v.compute_signature(url, params)
        assert v.validate(url, params, sig)
        out.append({"name": f"twilio {name}", "secret": token, "body": body, "url": url, "headers": {"x-twilio-signature": sig, "content-type": "application/x-www-form-urlencoded"}, "now": NOW})
    body = BODIES[0][1]
    digest = hashlib.sha256(body.encode()).hexdigest()
    url = f"https://hooks.example.com/webhooks/twilio?bodySHA256={digest}"
    sig = v.compute_signature(url, {})
    assert v.validate(url, body, sig)
    out.append({"name": "twilio json body with bodySHA256", "secret": token, "body": body, "url": url, "headers": {"x-twilio-signature": sig, "content-type": "application/json"}, "now": NOW})
    dump("twilio", out)


def hubspot_vectors():
    from hubspot.utils.signature import Signature

    out = []
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    url = "https://hooks.example.com/webhooks/hubspot"
    cases = [("batch of events", "POST", url, '[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":1764234000000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123}]'),
             ("with a query", "POST", url + "?portal=3", '[{"eventId":9,"objectId":1}]')]
    for name, method, uri, body in cases:
        ts = str(NOW * 1000 + 250)
        sig = Signature.get_signature(secret, body, "v3", uri, method, ts)
        out.append({"name": f"hubspot {name}", "secret": secret, "body": body, "url": uri, "method": method, "headers": {"x-hubspot-signature-v3": sig, "x-hubspot-request-timestamp": ts}, "now": NOW})
    dump("hubspot", out)


def paddle_vectors():
    from paddle_billing.Notifications.PaddleSignature import PaddleSignature
    from paddle_billing.Notifications.Secret import Secret

    out = []
    secret = "pdl_ntfset_01gkpjp8bkm3tm53kdgkx6sms7_6h3qd3uFSi9YCD3OLYAShQI90XTI5vEI"
    for i, (name, body) in enumerate(BODIES):
        ts = NOW + i
        h1 = PaddleSignature.calculate_hmac(secret, f"{ts}:{body}".encode()).hexdigest()
        header = f"ts={ts};h1={h1}"
        assert PaddleSignature().verify(header, body, Secret(secret))
        out.append({"name": f"paddle {name}", "secret": secret, "body": body, "headers": {"paddle-signature": header}, "now": ts})
    dump("paddle", out)


if __name__ == "__main__":
    stripe_vectors()
    standard_vectors("standard_webhooks", "standardwebhooks", "webhook")
    standard_vectors("svix", "svix", "svix")
    slack_vectors()
    twilio_vectors()
    hubspot_vectors()
    paddle_vectors()
