//! Config validation: every mistake names its field.

use super::*;

fn parse(text: &str) -> Result<Settings, ConfigError> {
    hookline_runtime::config::from_str_with_env::<Config>(text, Vec::new())?.validate()
}

const GOOD: &str = r#"
    [sources.shop.verify]
    scheme = "hmac"
    header = "X-Signature"
    prefix = "sha256="
    secrets = [{ value = "s3cret" }]
"#;

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
            .join("../deploy/ingress.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let settings =
        hookline_runtime::config::from_str_with_env::<Config>(&text, Vec::new()).unwrap().validate().unwrap();
    assert!(settings.sources.contains_key("demo"));
}

#[test]
fn defaults_are_documented_values() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9190");
    assert_eq!(s.raw_topic, "hookline.raw");
    assert_eq!(s.raw_partitions, 12);
    assert_eq!(s.sources["shop"].max_body_bytes, 1024 * 1024);
    assert_eq!(s.ack_timeout(), Duration::from_secs(2));
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_admin_endpoints_are_never_on_the_webhook_port() {
    let e = err(&format!("[server]\nlisten = '0.0.0.0:8080'\nadmin_listen = '0.0.0.0:8080'\n{GOOD}"));
    assert!(e.contains("server.admin_listen"), "{e}");
    let e = err(&format!("[server]\nadmin_listen = 'nowhere'\n{GOOD}"));
    assert!(e.contains("server.admin_listen"), "{e}");
    let s = parse(&format!("[server]\nlisten = '127.0.0.1:0'\nadmin_listen = '127.0.0.1:0'\n{GOOD}")).unwrap();
    assert_eq!((s.listen.port(), s.admin_listen.port()), (0, 0), "port 0 twice: two free ports");
}

#[test]
fn an_unknown_field_is_named() {
    let e = err(&format!("{GOOD}\n[server]\nlisten_addr = '0.0.0.0:1'\n"));
    assert!(e.contains("listen_addr"), "{e}");
    let e = err(&GOOD.replace("prefix", "prefx"));
    assert!(e.contains("prefx"), "{e}");
}

#[test]
fn a_missing_secret_is_named() {
    let e = err(&GOOD.replace("secrets = [{ value = \"s3cret\" }]", ""));
    assert!(e.contains("sources.shop.verify") && e.contains("secrets"), "{e}");
    let e = err(&GOOD.replace("secrets = [{ value = \"s3cret\" }]", "secrets = []"));
    assert!(e.contains("sources.shop.verify.secrets") && e.contains("at least one"), "{e}");
    let e = err(&GOOD.replace("{ value = \"s3cret\" }", "{ env = \"HOOKLINE_TEST_SURELY_UNSET_VAR\" }"));
    assert!(e.contains("sources.shop.verify.secrets[0].env") && e.contains("not set"), "{e}");
    let e = err(&GOOD.replace("{ value = \"s3cret\" }", "{ file = \"/nonexistent/secret\" }"));
    assert!(e.contains("sources.shop.verify.secrets[0].file"), "{e}");
    let e = err(&GOOD.replace("{ value = \"s3cret\" }", "{ value = \"a\", env = \"B\" }"));
    assert!(e.contains("exactly one"), "{e}");
}

#[test]
fn secrets_from_a_file_drop_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = GOOD.replace("{ value = \"s3cret\" }", &format!("{{ file = {:?}, id = \"k8s\" }}", path));
    let s = parse(&text).unwrap();
    let secrets = s.sources["shop"].verifier.secrets();
    assert_eq!(secrets[0].id(), "k8s");
    assert_eq!(secrets[0].expose(), b"from-file");
}

#[test]
fn an_unusable_listen_address_is_named() {
    let e = err(&format!("{GOOD}\n[server]\nlisten = 'localhost'\n"));
    assert!(e.contains("server.listen"), "{e}");
}

#[test]
fn unverified_sources_need_an_explicit_flag() {
    let e = err("[sources.open.verify]\nscheme = 'none'\n");
    assert!(e.contains("sources.open.allow_unverified"), "{e}");
    parse("[sources.open]\nallow_unverified = true\n[sources.open.verify]\nscheme = 'none'\n").unwrap();
    let e =
        err(&GOOD.replace("[sources.shop.verify]", "[sources.shop]\nallow_unverified = true\n[sources.shop.verify]"));
    assert!(e.contains("sources.shop.allow_unverified"), "{e}");
}

#[test]
fn bad_names_pointers_and_numbers_are_named() {
    let e = err(&GOOD.replace("sources.shop", "sources.Shop"));
    assert!(e.contains("sources.Shop"), "{e}");
    let e = err(&format!("{GOOD}\n[sources.shop.dedup_key]\njson_pointer = 'id'\n"));
    assert!(e.contains("sources.shop.dedup_key.json_pointer"), "{e}");
    let e = err(&format!("{GOOD}\n[topics]\nraw_partitions = 0\n"));
    assert!(e.contains("topics.raw_partitions"), "{e}");
    let e = err(&format!("{GOOD}\n[producer]\ncompression = 'brotli'\n"));
    assert!(e.contains("producer.compression"), "{e}");
    let e = err(&GOOD.replace("X-Signature", "X Signature"));
    assert!(e.contains("sources.shop.verify.header"), "{e}");
    let e = err(&format!("{GOOD}\n[kafka.client]\n'enable.idempotence' = 'false'\n"));
    assert!(e.contains("enable.idempotence"), "{e}");
}

#[test]
fn no_sources_is_an_error() {
    let e = hookline_runtime::config::from_str_with_env::<Config>("", Vec::new()).unwrap_err().to_string();
    assert!(e.contains("sources"), "{e}");
}

#[test]
fn every_scheme_parses_with_its_defaults() {
    let text = r#"
        [sources.stripe.verify]
        scheme = "stripe"
        secrets = [{ value = "whsec_test" }]
        [sources.std.verify]
        scheme = "standard_webhooks"
        secrets = [{ value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }]
        [sources.svix.verify]
        scheme = "svix"
        secrets = [{ value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }]
        [sources.github.verify]
        scheme = "github"
        secrets = [{ value = "s" }]
        allow_sha1 = true
        [sources.meta.verify]
        scheme = "meta"
        secrets = [{ value = "s" }]
        verify_token = { value = "t" }
        [sources.shopify.verify]
        scheme = "shopify"
        secrets = [{ value = "s" }]
        [sources.slack.verify]
        scheme = "slack"
        secrets = [{ value = "s" }]
        [sources.zoom.verify]
        scheme = "zoom"
        secrets = [{ value = "s" }]
        [sources.twilio.verify]
        scheme = "twilio"
        secrets = [{ value = "s" }]
        public_url = "https://hooks.example.com/webhooks/twilio"
        [sources.hubspot.verify]
        scheme = "hubspot"
        secrets = [{ value = "s" }]
        public_url = "https://hooks.example.com/webhooks/hubspot"
        [sources.paddle.verify]
        scheme = "paddle"
        secrets = [{ value = "pdl_ntfset_s" }]
        [sources.acme.verify]
        scheme = "hmac"
        header = "X-Acme-Signature"
        algorithm = "sha512"
        encoding = "base64"
        template = "{id}.{timestamp}.{body}"
        timestamp_header = "X-Acme-Timestamp"
        id_header = "X-Acme-Id"
        tolerance_secs = 60
        secrets = [{ value = "s" }]
        [sources.token.verify]
        scheme = "bearer"
        secrets = [{ value = "t" }]
        [sources.basic.verify]
        scheme = "basic"
        secrets = [{ value = "user:pass" }]
    "#;
    let s = parse(text).unwrap();
    let names: Vec<&str> = s.sources.values().map(|s| s.verifier.scheme_name()).collect();
    for scheme in [
        "stripe",
        "standard_webhooks",
        "svix",
        "github",
        "meta",
        "shopify",
        "slack",
        "zoom",
        "twilio",
        "hubspot",
        "paddle",
        "hmac",
        "bearer",
        "basic",
    ] {
        assert!(names.contains(&scheme), "{scheme} missing from {names:?}");
    }
    use hookline_schemas::raw::KeyOrigin;
    assert_eq!(s.sources["stripe"].dedup_key.as_ref().map(|k| k.origin()), Some(KeyOrigin::Provider));
    assert!(s.sources["acme"].dedup_key.is_none(), "a generic sender has no provider key");
}

#[test]
fn scheme_specific_mistakes_are_named() {
    let e =
        err("[sources.t.verify]\nscheme = 'twilio'\nsecrets = [{ value = 's' }]\npublic_url = 'https://x.com/a?b=1'\n");
    assert!(e.contains("sources.t.verify.public_url"), "{e}");
    let e = err("[sources.t.verify]\nscheme = 'twilio'\nsecrets = [{ value = 's' }]\n");
    assert!(e.contains("public_url"), "{e}");
    let e = err("[sources.s.verify]\nscheme = 'svix'\nsecrets = [{ value = 'whsec_!!!' }]\n");
    assert!(e.contains("sources.s.verify.secrets[0]") && e.contains("base64"), "{e}");
    let e = err(
        "[sources.h.verify]\nscheme = 'hmac'\nheader = 'x'\ntemplate = '{timestamp}.{body}'\nsecrets = [{ value = 's' }]\n",
    );
    assert!(e.contains("sources.h.verify.timestamp_header"), "{e}");
    let e =
        err("[sources.h.verify]\nscheme = 'hmac'\nheader = 'x'\ntemplate = '{payload}'\nsecrets = [{ value = 's' }]\n");
    assert!(e.contains("sources.h.verify.template"), "{e}");
    let e = err("[sources.s.verify]\nscheme = 'stripe'\nsecrets = [{ value = 's' }]\ntolerance_secs = 0\n");
    assert!(e.contains("sources.s.verify.tolerance_secs"), "{e}");
    let e = err("[sources.b.verify]\nscheme = 'basic'\nsecrets = [{ value = 'nocolon' }]\n");
    assert!(e.contains("sources.b.verify.secrets[0]"), "{e}");
    let e = err("[sources.x.verify]\nscheme = 'stripes'\nsecrets = []\n");
    assert!(e.contains("stripes"), "{e}");
}

#[test]
fn limits_and_network_settings_are_checked() {
    let with =
        |lines: &str| GOOD.replace("[sources.shop.verify]", &format!("[sources.shop]\n{lines}\n[sources.shop.verify]"));
    let e = err(&with("rate_limit = { per_second = 0 }"));
    assert!(e.contains("sources.shop.rate_limit.per_second"), "{e}");
    let e = err(&with("allowed_ips = ['10.0.0.0/33']"));
    assert!(e.contains("sources.shop.allowed_ips"), "{e}");
    let e = err(&with("content_types = ['json']"));
    assert!(e.contains("sources.shop.content_types"), "{e}");
    let e = err(&with("challenge = { param = 'c', token_param = 't' }"));
    assert!(e.contains("sources.shop.challenge"), "{e}");
    let e = err(&format!("{GOOD}\n[server]\ntrusted_proxies = ['nope']\n"));
    assert!(e.contains("server.trusted_proxies"), "{e}");
    let e = err(&format!("{GOOD}\n[server.tls]\ncert_file = '/nonexistent.pem'\nkey_file = '/nonexistent.key'\n"));
    assert!(e.contains("server.tls.cert_file"), "{e}");
    let e = err(&format!("{GOOD}\n[quarantine]\ntopic = 'hookline.raw'\n"));
    assert!(e.contains("quarantine.topic"), "{e}");
    let ok = parse(&with(
        "allowed_ips = ['203.0.113.0/24', '2001:db8::1']\ncontent_types = ['Application/JSON']\nmax_in_flight = 10\nrate_limit = { per_second = 5 }",
    ))
    .unwrap();
    assert_eq!(ok.sources["shop"].content_types.as_deref(), Some(&["application/json".to_owned()][..]));
    assert_eq!(ok.sources["shop"].allowed_ips.as_ref().map(Vec::len), Some(2));
}

#[test]
fn the_ack_budget_defaults_to_the_target_ack_latency_and_cannot_exceed_the_ack_timeout() {
    let with =
        |lines: &str| GOOD.replace("[sources.shop.verify]", &format!("[sources.shop]\n{lines}\n[sources.shop.verify]"));
    assert_eq!(parse(GOOD).unwrap().sources["shop"].ack_budget, Duration::from_millis(500));
    assert_eq!(parse(&with("ack_budget_ms = 150")).unwrap().sources["shop"].ack_budget, Duration::from_millis(150));
    let e = err(&with("ack_budget_ms = 2001"));
    assert!(e.contains("sources.shop.ack_budget_ms"), "{e}");
    let e = err(&with("ack_budget_ms = 0"));
    assert!(e.contains("sources.shop.ack_budget_ms"), "{e}");
}

#[test]
fn a_reload_knows_which_sections_need_a_restart() {
    let live = parse(GOOD).unwrap();
    let more_sources =
        format!("{GOOD}\n[sources.other]\nallow_unverified = true\n[sources.other.verify]\nscheme = \"none\"\n");
    assert_eq!(live.differences(&parse(&more_sources).unwrap()), Vec::<&str>::new(), "sources reload");
    let server_and_kafka = format!("[server]\nmax_in_flight = 7\n[kafka]\nbrokers = \"elsewhere:9092\"\n{GOOD}");
    assert_eq!(live.differences(&parse(&server_and_kafka).unwrap()), vec!["server", "kafka"]);
    let producer = format!("[producer]\nretry_after_secs = 9\n[topics]\nraw = \"other\"\n{GOOD}");
    assert_eq!(live.differences(&parse(&producer).unwrap()), vec!["topics", "producer"]);
}
