//! The pipeline against webhook bodies as each provider documents them.

use hookline_config::processor::Config;
use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::json_schema::Contract;
use hookline_schemas::raw::{KeyOrigin, RawMeta};
use serde_json::{json, Value};

use super::*;

fn pipeline(toml: &str) -> Pipeline {
    let settings = hookline_runtime::config::from_str_with_env::<Config>(toml, Vec::new()).unwrap().validate().unwrap();
    Pipeline::new(&settings).unwrap()
}

fn meta(source: &str, headers: &[(&str, &str)], content_type: Option<&str>) -> RawMeta {
    RawMeta {
        v: 1,
        source: source.into(),
        received_at_ms: 1_764_234_000_123,
        dedup_key: "key_1".into(),
        dedup_key_origin: KeyOrigin::Provider,
        content_type: content_type.map(str::to_owned),
        request_id: "r".into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        traceparent: None,
        reprocess: None,
    }
}

/// Runs `body` through the pipeline of `toml` and returns the events as JSON, checking each against the
/// published event schema.
fn events(toml: &str, meta: &RawMeta, body: &[u8]) -> Result<Vec<(String, Value)>, Decision> {
    let p = pipeline(toml);
    let input = Input { meta, key: Some(b"ordering_1"), body, partition: 4, offset: 99, traceparent: None };
    match p.process(&input) {
        Decision::Publish(events) => Ok(events
            .into_iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(&e.value).unwrap();
                let violations = Contract::Event.validator().unwrap().violations(&v);
                assert_eq!(violations, Vec::<String>::new(), "{v}");
                assert_eq!(v["hooklineindex"].as_u64().map(|i| i as u32), e.index);
                (e.topic.to_string(), v)
            })
            .collect()),
        other => Err(other),
    }
}

fn one(toml: &str, meta: &RawMeta, body: &[u8]) -> Value {
    let mut out = events(toml, meta, body).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0).1
}

fn failure(toml: &str, meta: &RawMeta, body: &[u8]) -> Failure {
    match events(toml, meta, body) {
        Err(Decision::Fail(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn attrs(e: &Value) -> (&str, Option<&str>, &str) {
    (e["type"].as_str().unwrap(), e["subject"].as_str(), e["time"].as_str().unwrap())
}

const RECEIVED: &str = "2025-11-27T09:00:00.123Z";

#[test]
fn generic_sources_get_the_documented_defaults() {
    let e = one("", &meta("shop", &[], None), br#"{"id":1,"n":12345678901234567890}"#);
    assert_eq!(attrs(&e), ("shop.webhook", Some("ordering_1"), RECEIVED));
    assert_eq!(e["id"], "key_1");
    assert_eq!(e["source"], "/webhooks/shop");
    assert_eq!(e["hooklinededupkey"], "key_1");
    assert_eq!((e["hooklinepartition"].as_i64(), e["hooklineoffset"].as_str()), (Some(4), Some("99")));
    assert_eq!(e["hooklinereceivedat"], RECEIVED);
    let p = pipeline("");
    let input = Input {
        meta: &meta("shop", &[], None),
        key: None,
        body: br#"{"n":12345678901234567890}"#,
        partition: 0,
        offset: 0,
        traceparent: None,
    };
    let Decision::Publish(out) = p.process(&input) else { panic!() };
    let text = String::from_utf8(out[0].value.clone()).unwrap();
    assert!(text.contains(r#""data":{"n":12345678901234567890}"#), "data verbatim: {text}");
    assert!(!text.contains("subject"), "no ordering key, no subject");
}

#[test]
fn stripe() {
    let body = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2019-02-19","created":1686089970,
        "data":{"object":{"id":"seti_1NG8Du2eZvKYlo2C9XMqbR0x","object":"setup_intent","status":"requires_confirmation"}},
        "livemode":false,"pending_webhooks":0,"request":{"id":null,"idempotency_key":null},"type":"setup_intent.created"}"#;
    let toml = "[sources.stripe]\nprovider = 'stripe'\n";
    let e = one(toml, &meta("stripe", &[], Some("application/json")), body);
    assert_eq!(attrs(&e), ("setup_intent.created", Some("seti_1NG8Du2eZvKYlo2C9XMqbR0x"), "2023-06-06T22:19:30.000Z"));
    let f = failure(toml, &meta("stripe", &[], None), br#"{"id":"evt_1","object":"event"}"#);
    assert_eq!((f.class, f.stage), (ErrorClass::MissingField, Stage::Normalize));
    assert!(f.reason.contains("`type`"), "{}", f.reason);
}

#[test]
fn github() {
    let toml = "[sources.github]\nprovider = 'github'\n";
    let headers = [("x-github-event", "pull_request"), ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")];
    let body = br#"{"action":"opened","number":2,"pull_request":{"id":279147437,"number":2,"state":"open"},
        "repository":{"id":186853002,"full_name":"Codertocat/Hello-World"},"sender":{"login":"Codertocat"}}"#;
    let e = one(toml, &meta("github", &headers, None), body);
    assert_eq!(attrs(&e), ("pull_request.opened", Some("Codertocat/Hello-World"), RECEIVED));
    let ping = br#"{"zen":"Design for failure.","hook_id":1,"organization":{"login":"octo-org"}}"#;
    let e = one(toml, &meta("github", &[("X-GitHub-Event", "ping")], None), ping);
    assert_eq!(attrs(&e), ("ping", Some("octo-org"), RECEIVED));
    let f = failure(toml, &meta("github", &[], None), body);
    assert_eq!(f.class, ErrorClass::MissingField);
    assert!(f.reason.contains("X-GitHub-Event"), "{}", f.reason);
}

#[test]
fn shopify() {
    let toml = "[sources.shopify]\nprovider = 'shopify'\n";
    let headers = [("x-shopify-topic", "orders/create"), ("x-shopify-triggered-at", "2023-03-29T18:00:27.877041743Z")];
    let body = br#"{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508",
        "email":"jon@example.com","total_price":"398.00","currency":"USD"}"#;
    let e = one(toml, &meta("shopify", &headers, None), body);
    assert_eq!(
        attrs(&e),
        ("orders/create", Some("gid://shopify/Order/820982911946154508"), "2023-03-29T18:00:27.877Z")
    );
    let e = one(toml, &meta("shopify", &[("shopify-topic", "products/update")], None), br#"{"id":632910392}"#);
    assert_eq!(attrs(&e), ("products/update", Some("632910392"), RECEIVED), "the newer header names and numeric ids");
}

#[test]
fn slack_events_commands_and_interactions() {
    let toml = "[sources.slack]\nprovider = 'slack'\n";
    let event = br#"{"token":"XXYYZZ","team_id":"T061EG9R6","api_app_id":"A0PNCHHK2","type":"event_callback",
        "event":{"type":"app_mention","user":"U061F7AUR","text":"<@U0LAN0Z89> is it everything a river should be?",
        "ts":"1515449522.000016","channel":"C0LAN2Q65","event_ts":"1515449522000016"},
        "event_id":"Ev0LAN670R","event_time":1515449522}"#;
    let e = one(toml, &meta("slack", &[], Some("application/json")), event);
    assert_eq!(attrs(&e), ("app_mention", Some("C0LAN2Q65"), "2018-01-08T22:12:02.000Z"));

    let command = b"token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&channel_id=C2147483705\
        &channel_name=test&user_id=U2147483697&user_name=Steve&command=%2Fweather&text=94070\
        &response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=13345224609.738474920.8088930838d88f008e0";
    let form = Some("application/x-www-form-urlencoded");
    let e = one(toml, &meta("slack", &[], form), command);
    assert_eq!(attrs(&e), ("slash_command", Some("C2147483705"), RECEIVED));
    assert_eq!(e["data"]["command"], "/weather");
    assert_eq!(e["data"]["response_url"], "https://hooks.slack.com/commands/1234/5678");

    let interaction = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U123%22%7D%2C\
        %22channel%22%3A%7B%22id%22%3A%22C456%22%7D%2C%22actions%22%3A%5B%5D%7D";
    let e = one(toml, &meta("slack", &[], form), interaction);
    assert_eq!(attrs(&e), ("block_actions", Some("C456"), RECEIVED));
    assert_eq!(e["data"]["user"]["id"], "U123", "data is the payload, parsed");

    let verification = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    assert_eq!(attrs(&one(toml, &meta("slack", &[], None), verification)).0, "url_verification");
    let f = failure(toml, &meta("slack", &[], None), br#"{"token":"x"}"#);
    assert_eq!(f.class, ErrorClass::MissingField);
}

#[test]
fn standard_webhooks_and_svix() {
    let body = br#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z",
        "data":{"id":"1f81eb52-5198-4599-803e-771906343485","type":"contact"}}"#;
    for provider in ["standard_webhooks", "svix"] {
        let toml = format!("[sources.sw]\nprovider = '{provider}'\n");
        let e = one(&toml, &meta("sw", &[], None), body);
        assert_eq!(attrs(&e), ("contact.created", Some("ordering_1"), "2022-11-03T20:26:10.344Z"));
    }
}

#[test]
fn twilio_status_callbacks_and_incoming_messages() {
    let toml = "[sources.twilio]\nprovider = 'twilio'\n";
    let status = b"SmsSid=SM2xxxxxx&SmsStatus=delivered&MessageStatus=delivered&To=%2B15558675310\
        &MessageSid=SM2xxxxxx&AccountSid=ACxxxxxxx&From=%2B15017250604&ApiVersion=2010-04-01";
    let e = one(toml, &meta("twilio", &[], Some("application/x-www-form-urlencoded")), status);
    assert_eq!(attrs(&e), ("message.delivered", Some("SM2xxxxxx"), RECEIVED));
    assert_eq!(e["data"]["To"], "+15558675310");
    let call = b"CallSid=CA123&AccountSid=AC1&From=%2B1555&To=%2B1666&CallStatus=completed&Direction=inbound";
    assert_eq!(attrs(&one(toml, &meta("twilio", &[], None), call)), ("call.completed", Some("CA123"), RECEIVED));
    let other = b"AccountSid=AC1&Foo=bar";
    assert_eq!(attrs(&one(toml, &meta("twilio", &[], None), other)).0, "twilio.webhook");
    let f = failure(toml, &meta("twilio", &[], None), b"Body=%FF%FE");
    assert_eq!((f.class, f.stage), (ErrorClass::InvalidForm, Stage::Parse));
}

#[test]
fn hubspot_batches_become_one_event_per_element() {
    let toml = "[sources.hubspot]\nprovider = 'hubspot'\n";
    let body = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"appId":54321,"occurredAt":1564113600000,
        "subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW"},
        {"eventId":2,"subscriptionId":12346,"portalId":62515,"appId":54321,"occurredAt":1564113600001,
        "subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":123,"propertyName":"firstname",
        "propertyValue":"sample-value","changeSource":"CRM"}]"#;
    let out = events(toml, &meta("hubspot", &[], None), body).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(attrs(&out[0].1), ("contact.creation", Some("123"), "2019-07-26T04:00:00.000Z"));
    assert_eq!(attrs(&out[1].1), ("contact.propertyChange", Some("123"), "2019-07-26T04:00:00.001Z"));
    assert_eq!((out[0].1["id"].as_str(), out[1].1["id"].as_str()), (Some("key_1/0"), Some("key_1/1")));
    assert_eq!(out[1].1["data"]["propertyName"], "firstname");

    let filtered = format!("{toml}filter = {{ deny = ['*.propertyChange'] }}\n");
    let out = events(&filtered, &meta("hubspot", &[], None), body).unwrap();
    assert_eq!(out.iter().map(|(_, e)| e["hooklineindex"].as_u64()).collect::<Vec<_>>(), vec![Some(0)]);
    assert_eq!(events(toml, &meta("hubspot", &[], None), b"[]"), Err(Decision::Filtered), "an empty batch");
}

#[test]
fn paddle_zoom_and_meta() {
    let paddle = br#"{"event_id":"evt_01hv8x2acma2gz9ncz2sjwr0ta","event_type":"subscription.activated",
        "occurred_at":"2024-04-12T10:18:49.621022Z","notification_id":"ntf_01hv8x2af1bfcdxs5gxm1hm6t1",
        "data":{"id":"sub_01hv8x29kz0t586xy6zn1a62ny","status":"active"}}"#;
    let e = one("[sources.paddle]\nprovider = 'paddle'\n", &meta("paddle", &[], None), paddle);
    assert_eq!(
        attrs(&e),
        ("subscription.activated", Some("sub_01hv8x29kz0t586xy6zn1a62ny"), "2024-04-12T10:18:49.621Z")
    );

    let zoom = br#"{"event":"meeting.started","event_ts":1626230691572,"payload":{"account_id":"AAAAAABBBB",
        "object":{"id":"1234567890","uuid":"4444AAAiAAAAAiAiAiiAii==","host_id":"x1yCzABCDEfg23HiJKl4mN","topic":"My Meeting"}}}"#;
    let e = one("[sources.zoom]\nprovider = 'zoom'\n", &meta("zoom", &[], None), zoom);
    assert_eq!(attrs(&e), ("meeting.started", Some("1234567890"), "2021-07-14T02:44:51.572Z"));

    let meta_body = br#"{"object":"page","entry":[{"id":"0","time":1583173667,
        "changes":[{"field":"feed","value":{"item":"status","verb":"add"}}]}]}"#;
    let e = one("[sources.fb]\nprovider = 'meta'\n", &meta("fb", &[], None), meta_body);
    assert_eq!(attrs(&e), ("page.feed", Some("0"), "2020-03-02T18:27:47.000Z"));
}

#[test]
fn configured_fields_override_presets_and_fail_clearly() {
    let toml = "[sources.s]\nprovider = 'stripe'\nevent_type = { header = 'x-kind' }\n\
        subject = { json_pointer = '/customer' }\ntime = { json_pointer = '/at', format = 'unix_millis' }\n";
    let m = meta("s", &[("X-Kind", "custom.kind")], None);
    let e = one(toml, &m, br#"{"type":"ignored","customer":"cus_9","at":1700000000000}"#);
    assert_eq!(attrs(&e), ("custom.kind", Some("cus_9"), "2023-11-14T22:13:20.000Z"));
    let e = one(toml, &m, br#"{"type":"x"}"#);
    assert_eq!(attrs(&e), ("custom.kind", Some("ordering_1"), RECEIVED), "absent subject and time fall back");

    let f = failure(toml, &meta("s", &[], None), b"{}");
    assert_eq!((f.class, f.stage), (ErrorClass::MissingField, Stage::Normalize));
    assert!(f.reason.contains("header `x-kind`"), "{}", f.reason);
    let f = failure(toml, &m, br#"{"at":"soon"}"#);
    assert_eq!(f.class, ErrorClass::InvalidField);
    assert!(f.reason.contains("unix_millis"), "{}", f.reason);
    let f = failure(toml, &m, br#"{"customer":{"id":1}}"#);
    assert_eq!(f.class, ErrorClass::InvalidField);
    assert!(f.reason.contains("an object"), "{}", f.reason);

    let pointer = "[sources.s]\nevent_type = { json_pointer = '/type' }\n";
    for (body, class) in
        [(&br#"{"kind":"x"}"#[..], ErrorClass::MissingField), (br#"{"type":7}"#, ErrorClass::InvalidField)]
    {
        assert_eq!(failure(pointer, &meta("s", &[], None), body).class, class);
    }
    let e = one(pointer, &meta("s", &[], None), br#"{"type":"  order.paid "}"#);
    assert_eq!(e["type"], "order.paid", "trimmed");
    let rfc = "[sources.s]\ntime = { header = 'x-at' }\n";
    let e = one(rfc, &meta("s", &[("x-at", "2026-11-27T10:00:00+01:00")], None), b"{}");
    assert_eq!(e["time"], "2026-11-27T09:00:00.000Z");
}

#[test]
fn bodies_that_cannot_be_parsed_fail_without_quoting_them() {
    let f = failure("", &meta("shop", &[], None), b"secret-ish <html>");
    assert_eq!((f.class, f.stage), (ErrorClass::InvalidJson, Stage::Parse));
    assert!(!f.reason.contains("secret-ish"), "{}", f.reason);
    assert_eq!(failure("", &meta("shop", &[], None), b"").class, ErrorClass::InvalidJson);
    let auto = "[sources.shop]\nformat = 'auto'\n";
    let e = one(auto, &meta("shop", &[], Some("application/x-www-form-urlencoded")), b"a=1&b=2");
    assert_eq!(e["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(e["datacontenttype"], "application/json");
}

#[test]
fn filters_keep_allowed_types_and_drop_denied_ones() {
    let toml =
        "[sources.stripe]\nprovider = 'stripe'\nfilter = { allow = ['invoice.*', 'charge.*'], deny = ['*.test'] }\n";
    let m = meta("stripe", &[], None);
    let kept = |ty: &str| events(toml, &m, format!(r#"{{"type":"{ty}"}}"#).as_bytes()).is_ok();
    assert!(kept("invoice.paid"));
    assert!(kept("charge.succeeded"));
    assert!(!kept("customer.created"), "not allowed");
    assert!(!kept("charge.test"), "denied after allowed");
    assert_eq!(events(toml, &m, br#"{"type":"customer.created"}"#), Err(Decision::Filtered));
}

#[test]
fn routes_fan_out_by_source_and_type_and_default_to_the_events_topic() {
    let toml = "[[routes]]\ntopic = 'billing'\nsources = ['stripe']\ntypes = ['invoice.*']\n\
        [[routes]]\ntopic = 'audit'\nsources = ['stripe']\n\
        [[routes]]\ntopic = 'hookline.events'\ntypes = ['invoice.paid']\n\
        [sources.stripe]\nprovider = 'stripe'\n";
    let topics = |source: &str, ty: &str| -> Vec<String> {
        events(toml, &meta(source, &[], None), format!(r#"{{"type":"{ty}"}}"#).as_bytes())
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    };
    assert_eq!(topics("stripe", "invoice.paid"), vec!["billing", "audit", "hookline.events"]);
    assert_eq!(topics("stripe", "invoice.created"), vec!["billing", "audit"]);
    assert_eq!(topics("stripe", "charge.failed"), vec!["audit"]);
    assert_eq!(topics("shop", "x"), vec!["hookline.events"], "no route matches: the default topic");
}

#[test]
fn route_data_schemas_and_the_event_schema_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["id","total"],"properties":{"total":{"type":"number","minimum":0}}}"#,
    )
    .unwrap();
    let toml = format!("[[routes]]\ntopic = 'orders'\ndata_schema = '{}'\n", schema.display());
    let m = meta("shop", &[], None);
    assert_eq!(events(&toml, &m, br#"{"id":1,"total":9.5}"#).unwrap()[0].0, "orders");
    let f = failure(&toml, &m, br#"{"id":1,"total":-1}"#);
    assert_eq!((f.class, f.stage), (ErrorClass::SchemaViolation, Stage::Validate));
    assert!(f.reason.contains("order.schema.json") && f.reason.contains("/total"), "{}", f.reason);

    let long_type = format!(r#"{{"type":"{}"}}"#, "t".repeat(300));
    let f =
        failure("[sources.s]\nevent_type = { json_pointer = '/type' }\n", &meta("s", &[], None), long_type.as_bytes());
    assert_eq!(f.class, ErrorClass::SchemaViolation, "an event the published schema rejects is not published");
    let unchecked = "[sources.s]\nevent_type = { json_pointer = '/type' }\nvalidate = false\n";
    let p = pipeline(unchecked);
    let input = Input {
        meta: &meta("s", &[], None),
        key: None,
        body: long_type.as_bytes(),
        partition: 0,
        offset: 0,
        traceparent: None,
    };
    assert!(matches!(p.process(&input), Decision::Publish(_)), "validation can be turned off per source");
}

/// The pipeline checks only the attributes a webhook decides and builds the others valid by construction:
/// on generated edge cases, an event it publishes always satisfies the published schema, and an event it
/// refuses as a schema violation is one the schema rejects too.
#[test]
fn the_attribute_check_agrees_with_the_published_event_schema() {
    let schema = Contract::Event.validator().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    const CHARS: [char; 6] = ['a', 'Z', '.', 'é', '€', '😀'];
    let text = |chars: u64, next: &mut dyn FnMut(u64) -> u64| -> String {
        (0..chars).map(|_| CHARS[next(CHARS.len() as u64) as usize]).collect()
    };
    let edge_times = [
        -62_167_219_200_001, // 0000-01-01T00:00:00.000Z minus 1 ms: year -1
        -62_167_219_200_000,
        0,
        1_764_234_000_123,
        253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        253_402_300_800_000,
        i64::MIN,
        i64::MAX,
    ];
    let (mut published, mut refused) = (0, 0);
    for _ in 0..400 {
        let source = {
            let len = 1 + next(64);
            (0..len).map(|i| if i == 0 { 'a' } else { ['a', '9', '_', '-'][next(4) as usize] }).collect::<String>()
        };
        let mut dedup_key = text(1 + next(80), &mut next);
        while dedup_key.len() > 256 {
            dedup_key.pop();
        }
        let ty_chars = [0, 1, 255, 256, 257, 300, next(320)][next(7) as usize];
        let ty = text(ty_chars, &mut next);
        let pick_time = |next: &mut dyn FnMut(u64) -> u64| match next(3) {
            0 => edge_times[next(edge_times.len() as u64) as usize],
            _ => i64::try_from(next(600_000_000_000_000)).unwrap() - 300_000_000_000_000,
        };
        let time_ms = pick_time(&mut next);
        let mut m = meta(&source, &[], None);
        m.dedup_key = dedup_key;
        m.received_at_ms = if next(4) == 0 { pick_time(&mut next) } else { 1_764_234_000_123 };
        let element = json!({ "type": ty, "subject": text(next(3) + u64::from(next(8) > 0), &mut next), "t": time_ms });
        let batch = next(2) == 0;
        let body = if batch { json!([element, element]) } else { element }.to_string();
        let key = text(next(3), &mut next);
        let input = Input {
            meta: &m,
            key: Some(key.as_bytes()),
            body: body.as_bytes(),
            partition: [0, 7, i32::MAX][next(3) as usize],
            offset: [0, 99, i64::MAX][next(3) as usize],
            traceparent: None,
        };
        let toml = |validate: bool| {
            format!(
                "[sources.{source}]\nprovider = '{}'\nevent_type = {{ json_pointer = '/type' }}\n\
                 subject = {{ json_pointer = '/subject' }}\ntime = {{ json_pointer = '/t', format = 'unix_millis' }}\n\
                 validate = {validate}\n",
                if batch { "hubspot" } else { "generic" }
            )
        };
        let violations = |events: &[EventOut]| -> Vec<String> {
            events.iter().flat_map(|e| schema.violations(&serde_json::from_slice(&e.value).unwrap())).collect()
        };
        match (pipeline(&toml(true)).process(&input), pipeline(&toml(false)).process(&input)) {
            (Decision::Publish(checked), Decision::Publish(unchecked)) => {
                assert_eq!(checked, unchecked);
                assert_eq!(violations(&checked), Vec::<String>::new(), "published but invalid: {body}");
                published += 1;
            }
            (Decision::Fail(f), Decision::Publish(unchecked)) => {
                assert_eq!((f.class, f.stage), (ErrorClass::SchemaViolation, Stage::Validate), "{}", f.reason);
                assert_ne!(violations(&unchecked), Vec::<String>::new(), "refused ({}) but valid: {body}", f.reason);
                refused += 1;
            }
            (Decision::Fail(a), Decision::Fail(b)) => assert_eq!(a, b, "a failure before the check"),
            other => panic!("{other:?}"),
        }
    }
    assert!(published > 50 && refused > 50, "both outcomes are exercised: {published} published, {refused} refused");
}

/// What an attacker (or a broken sender) can put in a correctly signed body: every one ends as an event or a
/// DLQ record with its reason, never a panic, a stack overflow or memory out of proportion to the body.
#[test]
fn hostile_bodies_end_as_an_event_or_a_dlq_record() {
    let generic = "[sources.g]\n";
    let stripe = "[sources.s]\nprovider = 'stripe'\n";
    let hubspot = "[sources.h]\nprovider = 'hubspot'\n";
    let (g, s, h) = (meta("g", &[], None), meta("s", &[], None), meta("h", &[], None));

    // Nesting far beyond serde_json's recursion limit: refused as JSON, without overflowing the stack.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    assert_eq!(failure(generic, &g, deep.as_bytes()).class, ErrorClass::InvalidJson);
    let deep_object = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert_eq!(failure(stripe, &s, deep_object.as_bytes()).class, ErrorClass::InvalidJson);
    // Nesting within the limit is data like any other.
    let nested = format!("{{\"id\":\"evt_1\",\"type\":\"t\",\"data\":{}1{}}}", "[".repeat(100), "]".repeat(100));
    assert_eq!(one(stripe, &s, nested.as_bytes())["type"], "t");

    // A huge array is one event (the body's size is bounded by the ingress); a huge batch is refused.
    let big = format!("[{}0]", "0,".repeat(300_000));
    assert_eq!(one(generic, &g, big.as_bytes())["data"].as_array().unwrap().len(), 300_001);
    let batch = format!("[{}{{}}]", "{},".repeat(body::MAX_BATCH));
    let f = failure(hubspot, &h, batch.as_bytes());
    assert_eq!((f.class, f.stage), (ErrorClass::InvalidField, Stage::Parse), "{}", f.reason);
    assert!(f.reason.contains("1001 events"), "{}", f.reason);
    let most = format!("[{}]", vec![r#"{"subscriptionType":"x","eventId":1}"#; body::MAX_BATCH].join(","));
    assert_eq!(events(hubspot, &h, most.as_bytes()).unwrap().len(), body::MAX_BATCH);

    // Bytes that are not UTF-8, and an empty body.
    assert_eq!(failure(generic, &g, b"{\"a\":\"\xff\xfe\"}").class, ErrorClass::InvalidJson);
    assert_eq!(failure(generic, &g, b"").class, ErrorClass::InvalidJson);

    // Duplicate keys: the last one counts for the preset, and `data` is the body as sent.
    let dup = br#"{"id":"evt_1","type":"first","type":"second","data":{"object":{"id":"o"}}}"#;
    let e = one(stripe, &s, dup);
    assert_eq!(e["type"], "second");

    // Numbers beyond 64 bits are kept digit for digit in `data`; as a time they are unreadable, not a crash.
    let huge = br#"{"id":"evt_1","type":"t","created":1e300,"amount":123456789012345678901234567890.000000001}"#;
    let input = Input { meta: &s, key: Some(b"ordering_1"), body: huge, partition: 0, offset: 0, traceparent: None };
    let Decision::Publish(out) = pipeline(stripe).process(&input) else { panic!("not published") };
    let text = String::from_utf8(out[0].value.to_vec()).unwrap();
    assert!(text.contains("123456789012345678901234567890.000000001") && text.contains("1e300"), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["time"], "2025-11-27T09:00:00.123Z", "an unreadable time is the time of receipt");
}

/// A config whose source `shop` runs `program` (written to a scratch file) and has `extra` config lines.
fn with_program(dir: &std::path::Path, program: &str, extra: &str) -> String {
    let path = dir.join("transform.vrl");
    std::fs::write(&path, program).unwrap();
    format!("[sources.shop]\ntransform = '{}'\n{extra}", path.display())
}

fn compile_error(toml: &str) -> String {
    let settings = hookline_runtime::config::from_str_with_env::<Config>(toml, Vec::new()).unwrap().validate().unwrap();
    Pipeline::new(&settings).unwrap_err().to_string()
}

/// The README's example: Stripe events without the customer's e-mail, everything else as it was.
#[test]
fn the_readme_stripe_transform_removes_the_customers_e_mail_and_nothing_else() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let program = root.join("examples/stripe-redact/redact-emails.vrl");
    let toml = format!("[sources.stripe]\nprovider = 'stripe'\ntransform = '{}'\n", program.display());
    let m = meta("stripe", &[], Some("application/json"));
    for sample in ["charge.succeeded", "invoice.paid"] {
        let body = std::fs::read(root.join(format!("examples/stripe-redact/samples/{sample}.json"))).unwrap();
        let e = one(&toml, &m, &body);
        let mut original: Value = serde_json::from_slice(&body).unwrap();
        let object = original["data"]["object"].as_object_mut().unwrap();
        let removed = ["customer_email", "receipt_email"].iter().filter_map(|f| object.remove(*f)).count()
            + object
                .get_mut("billing_details")
                .and_then(|b| b.as_object_mut())
                .and_then(|b| b.remove("email"))
                .into_iter()
                .count();
        assert!(removed >= 1, "{sample} has an e-mail to remove");
        assert_eq!(e["data"], original, "{sample}: only the e-mail fields differ");
        assert!(!e.to_string().contains("jenny.rosen@example.com"), "{e}");
        assert_eq!(e["redacted"], true, "the extension attribute is set");
        assert_eq!(e["type"], sample, "the preset's type is kept");
        assert_eq!(e["id"], "key_1");
    }
}

#[test]
fn a_transform_reshapes_the_event_and_adds_extension_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let program = r#"
        .type = "shop." + string!(.data.kind) + "." + string!(.data.action)
        .subject = "order-" + to_string!(.data.order.id)
        .data = { "order_id": .data.order.id, "total": .data.order.total }
        .shopregion = "eu"
        .shoppriority = 3
        .shopvip = false
    "#;
    let e = one(
        &with_program(dir.path(), program, ""),
        &meta("shop", &[], None),
        br#"{"kind":"order","action":"paid","order":{"id":42,"total":9.5,"email":"a@example.com"}}"#,
    );
    assert_eq!(attrs(&e), ("shop.order.paid", Some("order-42"), RECEIVED));
    assert_eq!(e["data"], json!({"order_id": 42, "total": 9.5}));
    assert_eq!((&e["shopregion"], &e["shoppriority"], &e["shopvip"]), (&json!("eu"), &json!(3), &json!(false)));
    assert_eq!(e["id"], "key_1", "hookline's attributes are untouched");
}

#[test]
fn abort_drops_the_event_and_runtime_errors_fail_the_webhook_with_vrls_message() {
    let dir = tempfile::tempdir().unwrap();
    let program = r#"
        if .data.test == true { abort }
        assert!(.data.amount != null, "an order without an amount")
        .data.cents = to_int!(.data.amount) * 100
    "#;
    let toml = with_program(dir.path(), program, "");
    let m = meta("shop", &[], None);
    let p = pipeline(&toml);
    let input = Input { meta: &m, key: None, body: br#"{"test":true}"#, partition: 0, offset: 0, traceparent: None };
    assert_eq!(p.process(&input), Decision::Filtered, "abort drops the event");

    let f = failure(&toml, &m, br#"{"id":1}"#);
    assert_eq!((f.class, f.stage), (ErrorClass::TransformError, Stage::Transform));
    assert!(f.reason.contains("transform.vrl") && f.reason.contains("an order without an amount"), "{}", f.reason);

    let f = failure(&toml, &m, br#"{"amount":"twelve"}"#);
    assert_eq!(f.class, ErrorClass::TransformError);
    assert!(f.reason.contains("to_int"), "VRL names the failed call: {}", f.reason);

    assert_eq!(one(&toml, &m, br#"{"amount":"12"}"#)["data"]["cents"], 1200);
}

#[test]
fn a_transform_cannot_break_the_event_hookline_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let m = meta("shop", &[], None);
    for (program, why) in [
        (".id = \"other\"", "changed `id`"),
        ("del(.hooklinededupkey)", "changed `hooklinededupkey`"),
        (".time = now()", "changed `time`"),
        (".type = 3", "`type`"),
        (".type = \"\"", "`type`"),
        (".subject = {}", "`subject`"),
        ("del(.data)", "removed `data`"),
        (". = [1]", "not an object"),
        (".Region = \"eu\"", "`Region`"),
        (".hooklinex = \"eu\"", "`hookline*`"),
        (".region = {\"a\": 1}", "`region` to map"),
        (".big = 3000000000", "`big` to integer"),
    ] {
        let f = failure(&with_program(dir.path(), program, ""), &m, br#"{"id":1}"#);
        assert_eq!(f.class, ErrorClass::TransformError, "{program}");
        assert!(f.reason.contains(why), "{program}: {}", f.reason);
    }
    let e = one(&with_program(dir.path(), ".note = null\n.at = t'2026-11-27T09:00:00Z'", ""), &m, b"{}");
    assert!(e.get("note").is_none(), "a null extension is left out");
    assert_eq!(e["at"], "2026-11-27T09:00:00Z");
    assert_eq!(one(&with_program(dir.path(), "del(.subject)", ""), &m, b"{}").get("subject"), None);
}

#[test]
fn a_program_that_does_not_compile_is_refused_with_vrls_diagnostic_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = with_program(dir.path(), "# fine\n.a = 1\n.b = upcase(.data.name)\n", "");
    let e = compile_error(&toml);
    assert!(e.contains("config field `sources.shop.transform`"), "{e}");
    assert!(e.contains(&format!("{}:3:", dir.path().join("transform.vrl").display())), "file and line: {e}");
    assert!(e.contains("error[E110]") || e.contains("error[E"), "VRL's error code: {e}");

    let e = compile_error(&with_program(dir.path(), "get_env_var!(\"HOME\")", ""));
    assert!(e.contains("get_env_var"), "no environment access: {e}");
    let e = compile_error(&with_program(dir.path(), "log(.data, level: \"error\")", ""));
    assert!(e.contains("log"), "no logging of bodies: {e}");
    let e = compile_error("[sources.shop]\nfilter = { condition = '\"yes\"' }\n");
    assert!(e.contains("sources.shop.filter.condition") && e.contains("not a boolean"), "{e}");
}

#[test]
fn conditions_filter_and_route_and_routes_run_their_own_transform() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("route.vrl");
    std::fs::write(&program, "del(.data.customer)\n.bigorder = true\n").unwrap();
    let toml = format!(
        "[sources.shop]\nfilter = {{ condition = '.data.test != true' }}\n\
         [[routes]]\ntopic = 'big-orders'\ncondition = '(to_int(.data.total) ?? 0) >= 1000'\ntransform = '{}'\n\
         [[routes]]\ntopic = 'hookline.events'\n",
        program.display()
    );
    let m = meta("shop", &[], None);
    let out = events(&toml, &m, br#"{"total":5000,"customer":"c1"}"#).unwrap();
    assert_eq!(out.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), vec!["big-orders", "hookline.events"]);
    assert_eq!(out[0].1["data"], json!({"total": 5000}));
    assert_eq!(out[0].1["bigorder"], true);
    assert_eq!(out[1].1["data"], json!({"total": 5000, "customer": "c1"}), "the other route gets the event as it was");
    let out = events(&toml, &m, br#"{"total":10}"#).unwrap();
    assert_eq!(out.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), vec!["hookline.events"]);
    let p = pipeline(&toml);
    let input = Input {
        meta: &m,
        key: None,
        body: br#"{"test":true,"total":5000}"#,
        partition: 0,
        offset: 0,
        traceparent: None,
    };
    assert_eq!(p.process(&input), Decision::Filtered);
}

#[test]
fn a_run_past_its_time_budget_is_stopped_and_fails_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    // Each element hashes the whole body: quadratic in the body's size.
    let program = "for_each(array!(.data.items)) -> |_i, _v| { _h = sha3(encode_json(.data)) }";
    let toml = with_program(dir.path(), program, "[vrl]\ntime_budget_ms = 1\n");
    let items: Vec<String> = (0..5000).map(|i| format!("\"item-{i}\"")).collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let f = failure(&toml, &meta("shop", &[], None), body.as_bytes());
    assert_eq!(f.class, ErrorClass::TransformError);
    assert!(f.reason.contains("time budget"), "{}", f.reason);
    one(&toml, &meta("shop", &[], None), br#"{"items":[1,2]}"#);
}

#[test]
fn a_traced_webhooks_events_carry_its_traceparent_which_transforms_cannot_change() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let dir = tempfile::tempdir().unwrap();
    let m = meta("shop", &[], None);
    let run = |toml: &str| {
        let input = Input {
            meta: &m,
            key: None,
            body: br#"{"id":1}"#,
            partition: 0,
            offset: 0,
            traceparent: Some(traceparent),
        };
        pipeline(toml).process(&input)
    };
    let Decision::Publish(out) = run("") else { panic!("published") };
    let event: Value = serde_json::from_slice(&out[0].value).unwrap();
    assert_eq!(event["traceparent"], traceparent);
    assert!(Contract::Event.validator().unwrap().violations(&event).is_empty());

    let program = dir.path().join("route.vrl");
    std::fs::write(&program, ".traceparent = \"00-00000000000000000000000000000001-0000000000000001-01\"\n").unwrap();
    let toml = format!("[[routes]]\ntopic = 'audit'\ntransform = '{}'\n", program.display());
    let Decision::Fail(f) = run(&toml) else { panic!("failed") };
    assert!(f.reason.contains("changed `traceparent`"), "{}", f.reason);
    let Decision::Fail(f) = run(&with_program(dir.path(), ".traceparent = \"x\"", "")) else { panic!("failed") };
    assert!(f.reason.contains("changed `traceparent`"), "nor the source's: {}", f.reason);
}
