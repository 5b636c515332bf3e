//! Realistic webhooks per provider: the body the provider sends for an event type, where it puts that type
//! (body field, `X-GitHub-Event`, `X-Shopify-Topic`…), its id headers, and the entity the webhook is about.
//!
//! Every webhook gets ids unique to the run (`run` prefix) and to its number; webhooks `4k..4k+3` are about
//! the same entity (payment intent, pull request, order…), so the ingress gives them one ordering key.

use http::HeaderName;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

/// Webhooks in a row about one entity.
pub const PER_ENTITY: u64 = 4;

/// Whose webhooks to imitate, from the source's scheme name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Stripe event objects.
    Stripe,
    /// Standard Webhooks `{type, timestamp, data}`.
    StandardWebhooks,
    /// Svix (same body as Standard Webhooks).
    Svix,
    /// GitHub, event name in `X-GitHub-Event`.
    GitHub,
    /// Meta (Graph API change notifications).
    Meta,
    /// Shopify, topic in `X-Shopify-Topic`.
    Shopify,
    /// Slack Events API `event_callback`.
    Slack,
    /// Zoom `{event, event_ts, payload}`.
    Zoom,
    /// Twilio status callback (form body).
    Twilio,
    /// HubSpot (a JSON array batch).
    HubSpot,
    /// Paddle Billing notifications.
    Paddle,
    /// Anything else (`hmac`, `bearer`, `basic`, `none`): `{id, type, created_at, data}`.
    Generic,
}

impl Provider {
    /// The provider of a scheme ([`hookline_providers::verify::Verifier::scheme_name`]).
    pub fn from_scheme(scheme: &str) -> Provider {
        match scheme {
            "stripe" => Provider::Stripe,
            "standard_webhooks" => Provider::StandardWebhooks,
            "svix" => Provider::Svix,
            "github" => Provider::GitHub,
            "meta" => Provider::Meta,
            "shopify" => Provider::Shopify,
            "slack" => Provider::Slack,
            "zoom" => Provider::Zoom,
            "twilio" => Provider::Twilio,
            "hubspot" => Provider::HubSpot,
            "paddle" => Provider::Paddle,
            _ => Provider::Generic,
        }
    }

    /// The event type sent when `--event` is not given.
    pub fn default_event(self) -> &'static str {
        match self {
            Provider::Stripe => "payment_intent.succeeded",
            Provider::StandardWebhooks | Provider::Svix => "invoice.paid",
            Provider::GitHub => "push",
            Provider::Meta => "feed",
            Provider::Shopify => "orders/create",
            Provider::Slack => "app_mention",
            Provider::Zoom => "meeting.started",
            Provider::Twilio => "delivered",
            Provider::HubSpot => "contact.creation",
            Provider::Paddle => "transaction.completed",
            Provider::Generic => "order.created",
        }
    }
}

/// One webhook, before signing: what is the same on every delivery of it.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its number in the run (0-based).
    pub n: u64,
    /// Its id (event id, message id…): the `webhook-id` of Standard Webhooks, the generic `{id}`.
    pub id: String,
    /// The exact body.
    pub body: bytes::Bytes,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Provider headers that are not credentials (`X-GitHub-Event`, `X-Shopify-Topic`…).
    pub headers: Vec<(HeaderName, String)>,
    /// The entity it is about (what the provider's ordering key is made of).
    pub entity: String,
}

/// What varies per run: a unique prefix and the clock reading the bodies carry.
#[derive(Debug, Clone)]
pub struct Run {
    /// Hex prefix unique to this run.
    pub id: String,
    /// Seconds since the epoch when the run started.
    pub now: i64,
}

impl Run {
    /// A fresh run id (from a UUIDv7: time and randomness) at `now`.
    pub fn new(now: i64) -> Run {
        let hex = uuid::Uuid::now_v7().simple().to_string();
        Run { id: format!("{}{}", &hex[4..12], &hex[20..28]), now }
    }
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn header(name: &'static str, value: String) -> (HeaderName, String) {
    (HeaderName::from_static(name), value)
}

fn uuid() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// `a.b.c` → (`a`, `c`): the resource a dotted type is about and its last word.
fn split_type(event: &str) -> (&str, &str) {
    let first = event.split('.').next().unwrap_or(event);
    let last = event.rsplit('.').next().unwrap_or(event);
    (first, last)
}

/// Webhook number `n` of a run, of event type `event`. `rng` picks amounts and names.
pub fn build(provider: Provider, event: &str, run: &Run, n: u64, rng: &mut fastrand::Rng) -> Webhook {
    let r = &run.id;
    let group = n / PER_ENTITY;
    let now = run.now;
    let amount = rng.u64(100..100_000);
    let json_body = |v: Value| bytes::Bytes::from(v.to_string());
    let mut headers = Vec::new();
    let (id, body, content_type, entity) = match provider {
        Provider::Stripe => {
            let id = format!("evt_{r}{n:06}");
            let object = stripe_object(event, r, group, amount);
            let entity = object["id"].as_str().unwrap_or_default().to_owned();
            let body = json!({
                "id": id,
                "object": "event",
                "api_version": "2024-06-20",
                "created": now,
                "data": { "object": object },
                "livemode": false,
                "pending_webhooks": 1,
                "request": { "id": format!("req_{r}{n:06}"), "idempotency_key": uuid() },
                "type": event,
            });
            (id, json_body(body), "application/json", entity)
        }
        Provider::StandardWebhooks | Provider::Svix => {
            let id = format!("msg_{r}{n:06}");
            let entity = format!("{}_{r}{group:06}", split_type(event).0);
            let body = json!({
                "type": event,
                "timestamp": rfc3339(now),
                "data": { "id": entity, "amount": amount, "currency": "usd" },
            });
            (id, json_body(body), "application/json", entity)
        }
        Provider::GitHub => github(event, n, group, &mut headers),
        Provider::Meta => {
            let id = format!("{r}{n:06}");
            let page = format!("1{:014}", group);
            let body = json!({
                "object": "page",
                "entry": [{
                    "id": page,
                    "time": now,
                    "changes": [{
                        "field": event,
                        "value": { "item": "status", "verb": "add", "post_id": format!("{page}_{id}"),
                                   "message": "Hello from hookline send", "created_time": now },
                    }],
                }],
            });
            (id, json_body(body), "application/json", page)
        }
        Provider::Shopify => {
            let gid = match event.split('/').next().unwrap_or(event) {
                "orders" => "Order",
                "products" => "Product",
                "customers" => "Customer",
                "fulfillments" => "Fulfillment",
                "refunds" => "Refund",
                "carts" => "Cart",
                "checkouts" => "Checkout",
                _ => "Resource",
            };
            // Shopify ids are 64-bit integers, beyond what a double holds exactly; one per run and entity.
            let run_part = u64::from_str_radix(r.get(..8).unwrap_or("0"), 16).unwrap_or(0) % 1_000_000;
            let object_id: u64 = 820_982_911_946_154_508 + run_part * 1_000_000_000 + group;
            let entity = format!("gid://shopify/{gid}/{object_id}");
            let webhook_id = uuid();
            let body = json!({
                "id": object_id,
                "admin_graphql_api_id": entity,
                "email": format!("buyer{group}@example.com"),
                "created_at": rfc3339(now),
                "currency": "USD",
                "total_price": format!("{}.{:02}", amount / 100, amount % 100),
                "financial_status": "paid",
                "line_items": [{ "id": object_id + 1, "quantity": 1, "sku": "HOOK-1", "price": "10.00" }],
            });
            headers.push(header("x-shopify-topic", event.to_owned()));
            headers.push(header("x-shopify-webhook-id", webhook_id.clone()));
            headers.push(header("x-shopify-event-id", uuid()));
            headers.push(header("x-shopify-shop-domain", "hookline-sandbox.myshopify.com".to_owned()));
            headers.push(header("x-shopify-triggered-at", rfc3339(now)));
            headers.push(header("x-shopify-api-version", "2024-07".to_owned()));
            (webhook_id, json_body(body), "application/json", entity)
        }
        Provider::Slack => {
            let id = format!("Ev{}{n:06}", r.to_ascii_uppercase());
            let channel = format!("C{group:08}");
            let body = json!({
                "token": "sandbox-verification-token",
                "team_id": "T0HOOKLINE",
                "api_app_id": "A0HOOKLINE",
                "event": {
                    "type": event,
                    "user": "U0SANDBOX",
                    "text": "<@U0HOOKLINE> hello",
                    "ts": format!("{now}.{n:06}"),
                    "channel": channel,
                    "event_ts": format!("{now}.{n:06}"),
                },
                "type": "event_callback",
                "event_id": id,
                "event_time": now,
            });
            (id, json_body(body), "application/json", channel)
        }
        Provider::Zoom => {
            let id = format!("{r}{n:06}");
            let meeting = 80_000_000_000 + group;
            let body = json!({
                "event": event,
                "event_ts": now * 1000,
                "payload": {
                    "account_id": "hooklineSandbox",
                    "object": { "id": meeting, "uuid": id, "topic": "Sandbox meeting", "host_id": "h0st" },
                },
            });
            (id, json_body(body), "application/json", meeting.to_string())
        }
        Provider::Twilio => {
            let sid = format!("SM{r}{n:016}");
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("AccountSid", "AC00000000000000000000000000sandbox")
                .append_pair("ApiVersion", "2010-04-01")
                .append_pair("From", "+15005550006")
                .append_pair("To", &format!("+1555{:07}", group % 10_000_000))
                .append_pair("MessageSid", &sid)
                .append_pair("MessageStatus", event)
                .append_pair("SmsStatus", event)
                .finish();
            headers.push(header("i-twilio-idempotency-token", format!("{sid}-{}", uuid())));
            let to = format!("+1555{:07}", group % 10_000_000);
            (sid, bytes::Bytes::from(body), "application/x-www-form-urlencoded", to)
        }
        Provider::HubSpot => {
            // HubSpot event ids are numbers; unique per run through the run's clock and the webhook number.
            let event_id = (now as u64 % 1_000_000_000) * 1_000_000 + n % 1_000_000;
            let object_id = 5_000 + group;
            let body = json!([{
                "eventId": event_id,
                "subscriptionId": 2_000_001,
                "portalId": 62_515,
                "appId": 1_160_452,
                "occurredAt": now * 1000,
                "subscriptionType": event,
                "attemptNumber": 0,
                "objectId": object_id,
                "changeSource": "CRM",
                "changeFlag": "NEW",
            }]);
            (event_id.to_string(), json_body(body), "application/json", object_id.to_string())
        }
        Provider::Paddle => {
            let id = format!("evt_{r}{n:06}");
            let prefix = match split_type(event).0 {
                "transaction" => "txn",
                "subscription" => "sub",
                "customer" => "ctm",
                "address" => "add",
                "adjustment" => "adj",
                other => other,
            };
            let entity = format!("{prefix}_{r}{group:06}");
            let status = split_type(event).1;
            let body = json!({
                "event_id": id,
                "event_type": event,
                "occurred_at": rfc3339(now),
                "notification_id": format!("ntf_{r}{n:06}"),
                "data": {
                    "id": entity,
                    "status": status,
                    "currency_code": "USD",
                    "details": { "totals": { "total": amount.to_string() } },
                },
            });
            (id, json_body(body), "application/json", entity)
        }
        Provider::Generic => {
            let id = format!("{r}{n:06}");
            let entity = format!("{}_{r}{group:06}", split_type(event).0);
            let body = json!({
                "id": id,
                "type": event,
                "created_at": rfc3339(now),
                "data": { "id": entity, "amount": amount, "currency": "usd" },
            });
            (id, json_body(body), "application/json", entity)
        }
    };
    Webhook { n, id, body, content_type, headers, entity }
}

fn stripe_object(event: &str, r: &str, group: u64, amount: u64) -> Value {
    let customer = format!("cus_{r}{group:06}");
    let last = split_type(event).1;
    if event.starts_with("checkout.session.") {
        return json!({ "id": format!("cs_test_{r}{group:06}"), "object": "checkout.session", "mode": "payment",
                        "amount_total": amount, "currency": "usd", "customer": customer,
                        "payment_status": if last == "completed" { "paid" } else { "unpaid" } });
    }
    if event.starts_with("customer.subscription.") {
        return json!({ "id": format!("sub_{r}{group:06}"), "object": "subscription", "customer": customer,
                        "status": if last == "deleted" { "canceled" } else { "active" } });
    }
    match split_type(event).0 {
        "payment_intent" => json!({
            "id": format!("pi_{r}{group:06}"), "object": "payment_intent", "amount": amount, "currency": "usd",
            "customer": customer,
            "status": match last { "succeeded" => "succeeded", "canceled" => "canceled", "processing" => "processing",
                                   _ => "requires_payment_method" },
        }),
        "charge" => json!({
            "id": format!("ch_{r}{group:06}"), "object": "charge", "amount": amount, "currency": "usd",
            "payment_intent": format!("pi_{r}{group:06}"), "paid": last != "failed",
            "status": if last == "failed" { "failed" } else { "succeeded" },
        }),
        "customer" => json!({ "id": customer, "object": "customer", "email": format!("customer{group}@example.com") }),
        "invoice" => json!({
            "id": format!("in_{r}{group:06}"), "object": "invoice", "customer": customer, "currency": "usd",
            "amount_due": amount, "amount_paid": if last == "paid" { amount } else { 0 },
            "status": if last == "paid" { "paid" } else { "open" },
        }),
        other => json!({ "id": format!("{other}_{r}{group:06}"), "object": other }),
    }
}

fn github(
    event: &str,
    n: u64,
    group: u64,
    headers: &mut Vec<(HeaderName, String)>,
) -> (String, bytes::Bytes, &'static str, String) {
    // `pull_request.closed` is event `pull_request` with `"action": "closed"`.
    let (name, action) = match event.split_once('.') {
        Some((name, action)) => (name, Some(action)),
        None => (event, None),
    };
    let number = group + 1;
    let repo_name = if name == "push" { format!("widgets-{group}") } else { "widgets".to_owned() };
    let repository = json!({ "id": 4_200_000 + group, "name": repo_name, "full_name": format!("acme/{repo_name}"),
                             "private": false, "owner": { "login": "acme", "id": 1 } });
    let sender = json!({ "login": "octocat", "id": 583_231, "type": "User" });
    let sha = |k: u64| format!("{:040x}", u128::from(k) * 0x9e37_79b9 + u128::from(n));
    let (body, entity) = match name {
        "push" => (
            json!({ "ref": "refs/heads/main", "before": sha(1), "after": sha(2), "created": false, "deleted": false,
                    "forced": false, "commits": [{ "id": sha(2), "message": "Sandbox commit", "distinct": true }],
                    "repository": repository, "pusher": { "name": "octocat" }, "sender": sender }),
            format!("acme/{repo_name}"),
        ),
        "pull_request" => (
            json!({ "action": action.unwrap_or("opened"), "number": number,
                    "pull_request": { "id": 1_000_000 + number, "number": number, "state": "open",
                                      "title": "Sandbox change", "user": sender.clone() },
                    "repository": repository, "sender": sender }),
            format!("acme/widgets#{number}"),
        ),
        "issues" => (
            json!({ "action": action.unwrap_or("opened"), "issue": { "id": 2_000_000 + number, "number": number,
                    "title": "Sandbox issue", "state": "open", "user": sender.clone() },
                    "repository": repository, "sender": sender }),
            format!("acme/widgets#{number}"),
        ),
        "ping" => (
            json!({ "zen": "Keep it logically awesome.", "hook_id": 12_345_678,
                    "hook": { "type": "Repository", "id": 12_345_678, "events": ["*"], "active": true },
                    "repository": repository, "sender": sender }),
            format!("acme/{repo_name}"),
        ),
        _ => {
            let mut body = json!({ "repository": repository, "sender": sender });
            if let Some(action) = action {
                body["action"] = json!(action);
            }
            (body, format!("acme/{repo_name}"))
        }
    };
    let delivery = uuid();
    headers.push(header("x-github-event", name.to_owned()));
    headers.push(header("x-github-delivery", delivery.clone()));
    headers.push(header("x-github-hook-id", "12345678".to_owned()));
    headers.push(header("user-agent", "GitHub-Hookshot/hookline-send".to_owned()));
    (delivery, bytes::Bytes::from(body.to_string()), "application/json", entity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(p: Provider, event: &str, n: u64) -> Webhook {
        build(p, event, &Run { id: "abcd1234".into(), now: 1_700_000_000 }, n, &mut fastrand::Rng::with_seed(7))
    }

    fn json(w: &Webhook) -> Value {
        serde_json::from_slice(&w.body).unwrap()
    }

    fn header_of<'a>(w: &'a Webhook, name: &str) -> &'a str {
        w.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn the_type_lands_where_the_provider_puts_it() {
        let w = one(Provider::Stripe, "invoice.paid", 0);
        let b = json(&w);
        assert_eq!((b["type"].as_str(), b["object"].as_str()), (Some("invoice.paid"), Some("event")));
        assert!(b["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(b["data"]["object"]["object"], "invoice");
        assert_eq!(w.entity, b["data"]["object"]["id"].as_str().unwrap());
        assert_eq!(
            json(&one(Provider::Stripe, "checkout.session.completed", 0))["data"]["object"]["object"],
            "checkout.session"
        );

        let w = one(Provider::GitHub, "pull_request.closed", 5);
        assert_eq!(header_of(&w, "x-github-event"), "pull_request");
        assert_eq!(json(&w)["action"], "closed");
        assert_eq!(w.entity, "acme/widgets#2");
        assert_eq!(header_of(&w, "x-github-delivery").len(), 36);

        let w = one(Provider::Shopify, "orders/create", 0);
        assert_eq!(header_of(&w, "x-shopify-topic"), "orders/create");
        assert!(json(&w)["id"].as_u64().unwrap() > 1 << 53, "a 64-bit id");
        assert_eq!(w.entity, json(&w)["admin_graphql_api_id"].as_str().unwrap());

        assert_eq!(json(&one(Provider::Slack, "app_mention", 0))["event"]["type"], "app_mention");
        assert_eq!(json(&one(Provider::Zoom, "meeting.ended", 0))["event"], "meeting.ended");
        assert_eq!(json(&one(Provider::HubSpot, "deal.creation", 0))[0]["subscriptionType"], "deal.creation");
        assert_eq!(json(&one(Provider::Paddle, "subscription.created", 0))["event_type"], "subscription.created");
        assert!(json(&one(Provider::Paddle, "subscription.created", 0))["data"]["id"]
            .as_str()
            .unwrap()
            .starts_with("sub_"));
        assert_eq!(json(&one(Provider::Svix, "user.created", 0))["type"], "user.created");
        assert_eq!(json(&one(Provider::Meta, "feed", 0))["entry"][0]["changes"][0]["field"], "feed");
        let g = json(&one(Provider::Generic, "order.created", 0));
        assert_eq!((g["type"].as_str(), g["data"].is_object()), (Some("order.created"), true));

        let w = one(Provider::Twilio, "delivered", 0);
        assert_eq!(w.content_type, "application/x-www-form-urlencoded");
        let form: Vec<(String, String)> = form_urlencoded::parse(&w.body).into_owned().collect();
        assert!(form.contains(&("MessageStatus".into(), "delivered".into())), "{form:?}");
        assert!(form.contains(&("From".into(), "+15005550006".into())), "{form:?}");
    }

    #[test]
    fn ids_are_unique_per_webhook_and_entities_are_shared_by_four() {
        for p in [
            Provider::Stripe,
            Provider::GitHub,
            Provider::Shopify,
            Provider::Slack,
            Provider::Zoom,
            Provider::Twilio,
            Provider::HubSpot,
            Provider::Paddle,
            Provider::Svix,
            Provider::Meta,
            Provider::Generic,
        ] {
            let event = p.default_event();
            let ws: Vec<Webhook> = (0..8).map(|n| one(p, event, n)).collect();
            let ids: std::collections::BTreeSet<&str> = ws.iter().map(|w| w.id.as_str()).collect();
            assert_eq!(ids.len(), 8, "{p:?}");
            if p != Provider::Twilio {
                assert!(serde_json::from_slice::<Value>(&ws[0].body).is_ok(), "{p:?} sends JSON");
            }
            assert_eq!(ws[0].entity, ws[3].entity, "{p:?}");
            assert_ne!(ws[3].entity, ws[4].entity, "{p:?}");
        }
    }
}
