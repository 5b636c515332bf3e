//! Webhooks as each provider sends them, signed at a chosen time, for end-to-end tests.
//!
//! [`all_sources_toml`] configures one test source per provider of [`hookline_providers::ALL`], named after
//! it and verified with its sample settings, and one per scheme for any sender: `acme` (generic HMAC), `partner`
//! (bearer token) and `legacy` (basic auth). A [`Signer`] reads such a config as the ingress does and signs with
//! the source's own verifier ([`Verifier::sign_request`], the schemes' `sign` functions, which the providers'
//! unit tests check against vectors of their official libraries): a request signed here is one the provider
//! would send. Bodies are the providers' samples ([`hookline_providers::Provider::sample`]), which know the
//! keys the ingress should find in them.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookline_config::ingress::{Config, Source};
use hookline_providers::sample::{self, Run, Webhook};
use hookline_providers::verify::{Outgoing, Verifier};

/// The test sources for the schemes of any sender: name and `[verify]` lines.
const GENERIC_SOURCES: [(&str, &str); 3] = [
    (
        "acme",
        "scheme = \"hmac\"\nheader = \"X-Acme-Signature\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"v1=\"\ntemplate = \"{id}.{timestamp}.{body}\"\ntimestamp_header = \"X-Acme-Timestamp\"\nid_header = \"X-Acme-Id\"\nsecrets = [{ value = \"e2e-acme-secret\" }]",
    ),
    ("partner", "scheme = \"bearer\"\nsecrets = [{ value = \"e2e-bearer-token\" }]"),
    ("legacy", "scheme = \"basic\"\nsecrets = [{ value = \"hooks:s3cret-password\" }]"),
];

/// The names of every test source of [`all_sources_toml`]: the providers', then `acme`, `partner`, `legacy`.
pub fn all_sources() -> Vec<&'static str> {
    hookline_providers::ALL.iter().map(|p| p.name()).chain(GENERIC_SOURCES.iter().map(|(name, _)| *name)).collect()
}

/// The `[sources.*]` TOML of every test source, for an ingress whose public base URL is `base`.
pub fn all_sources_toml(base: &str) -> String {
    let mut out = String::new();
    for p in hookline_providers::ALL {
        let name = p.name();
        let settings = p.sample_settings(&format!("{base}/webhooks/{name}"));
        out.push_str(&format!("[sources.{name}.verify]\nscheme = \"{name}\"\n{settings}\n"));
    }
    for (name, settings) in GENERIC_SOURCES {
        out.push_str(&format!("[sources.{name}.verify]\n{settings}\n"));
    }
    out
}

/// The secret values (`value = "…"`) written in a config's TOML, to check that none is ever printed.
pub fn secrets_in(toml: &str) -> Vec<String> {
    toml.split("value = \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
}

/// Signs requests as the sources of an ingress config's `[sources.*]` TOML.
#[derive(Debug)]
pub struct Signer {
    sources: BTreeMap<String, Arc<Source>>,
    base: String,
    run: Run,
}

impl Signer {
    /// The sources of `sources_toml`, for an ingress whose public base URL is `base`.
    pub fn new(sources_toml: &str, base: &str) -> Signer {
        let config: Config = hookline_runtime::config::from_str_with_env(sources_toml, Vec::new())
            .unwrap_or_else(|e| panic!("test sources: {e}"));
        let settings = config.validate().unwrap_or_else(|e| panic!("test sources: {e}"));
        Signer { sources: settings.sources, base: base.to_owned(), run: Run::new(crate::now_ms() / 1000) }
    }

    fn verifier(&self, source: &str) -> &Verifier {
        &self.sources.get(source).unwrap_or_else(|| panic!("no test source {source}")).verifier
    }

    /// Webhook number `n` of `source`, as its provider sends one (a generic body for a source without one).
    pub fn webhook(&self, source: &str, n: u64) -> Webhook {
        let mut rng = fastrand::Rng::with_seed(n);
        match hookline_providers::find(self.verifier(source).scheme_name()) {
            Some(p) => p.sample(p.default_event(), &self.run, n, &mut rng),
            None => sample::generic(sample::GENERIC_EVENT, &self.run, n, &mut rng),
        }
    }

    /// The headers `source`'s sender sends with `w` when it signs at `now` (seconds): the webhook's own, its
    /// content type and the credentials.
    pub fn headers(&self, source: &str, w: &Webhook, now: i64) -> Vec<(String, String)> {
        let mut headers = self.sign(source, &w.body, w.content_type, &w.id, now);
        headers.extend(w.headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
        headers
    }

    /// The content type and credential headers for any body sent to `source` at `now`; `id` is the
    /// webhook id of schemes that send one (Standard Webhooks, a generic `{id}`).
    pub fn sign(&self, source: &str, body: &[u8], content_type: &str, id: &str, now: i64) -> Vec<(String, String)> {
        let url = format!("{}/webhooks/{source}", self.base);
        let out = Outgoing { method: &http::Method::POST, url: &url, content_type, body, timestamp_secs: now, id };
        let signed = self.verifier(source).sign_request(&out).unwrap_or_else(|e| panic!("{source}: {e}"));
        std::iter::once(("content-type".to_owned(), content_type.to_owned()))
            .chain(signed.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())))
            .collect()
    }

    /// Whether `source`'s ordering key is its provider's entity (else it is the dedup key).
    pub fn orders_by_entity(&self, source: &str) -> bool {
        self.sources[source].ordering_key.is_some()
    }

    /// Whether `source`'s credentials cover the body (not for bearer and basic).
    pub fn signs_body(&self, source: &str) -> bool {
        !matches!(self.verifier(source).scheme_name(), "bearer" | "basic")
    }
}
