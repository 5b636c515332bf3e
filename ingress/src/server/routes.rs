//! The configured sources as requests find them, and their replacement when the config is reloaded.
//!
//! A request takes the [`Routes`] live when it arrives and keeps them to its answer, so a reload never changes
//! the rules under a request already being handled, and never touches a connection. A reload replaces the
//! whole set at once (a source's secrets, keys, limits and challenge come from one generation, never a mix);
//! a source whose rate limit or `max_in_flight` is unchanged keeps its token bucket and budget, so a reload
//! neither refills a drained bucket nor doubles a spent budget.
//!
//! Only `[sources]` reloads. The listeners, budgets, Kafka client and topics are set up once: a reload that
//! changes them applies its sources, and the log line names the sections that need a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hookline_config::ingress::{Settings, Source};
use http::header::HeaderName;

use super::{webhook, App};
use crate::limits::{Budget, TokenBucket};
use crate::telemetry::{Metrics, SourceLabels, SourceMetrics};

/// A configured source with its metric handles, budget and the headers to drop.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) source: Arc<Source>,
    pub(super) metrics: SourceMetrics,
    pub(super) dropped_headers: Vec<HeaderName>,
    pub(super) budget: Option<Budget>,
    pub(super) rate_limit: Option<Arc<TokenBucket>>,
}

/// The sources of one config generation, by name.
#[derive(Debug)]
pub(super) struct Routes {
    generation: u64,
    by_name: HashMap<String, Route>,
}

impl Routes {
    /// The sources the process starts with: generation 1.
    pub(super) fn first(sources: BTreeMap<String, Arc<Source>>, metrics: &Metrics) -> Routes {
        Routes::build(1, sources, metrics, None)
    }

    fn build(
        generation: u64,
        sources: BTreeMap<String, Arc<Source>>,
        metrics: &Metrics,
        previous: Option<&Routes>,
    ) -> Routes {
        let by_name = sources
            .into_iter()
            .map(|(name, source)| {
                let before = previous.and_then(|p| p.by_name.get(&name));
                let mut dropped_headers: Vec<HeaderName> =
                    webhook::DROPPED_HEADERS.iter().map(|h| HeaderName::from_static(h)).collect();
                dropped_headers.extend(source.verifier.credential_headers());
                let budget = match before {
                    Some(b) if b.source.max_in_flight == source.max_in_flight => b.budget.clone(),
                    _ => source.max_in_flight.map(Budget::new),
                };
                let rate_limit = match before {
                    Some(b) if b.source.rate_limit == source.rate_limit => b.rate_limit.clone(),
                    _ => source.rate_limit.map(|r| Arc::new(TokenBucket::new(r.per_second, r.burst))),
                };
                let labels = SourceLabels {
                    name: name.clone(),
                    secret_ids: source.verifier.secret_ids(),
                    ack_budget: source.ack_budget,
                };
                let route = Route { metrics: metrics.for_source(&labels), source, dropped_headers, budget, rate_limit };
                (name, route)
            })
            .collect();
        Routes { generation, by_name }
    }

    /// The route of source `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name)
    }
}

impl App {
    /// The routes live now.
    pub(super) fn routes(&self) -> Arc<Routes> {
        self.routes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The config generation live now: 1 at startup, one more for each reload applied.
    pub fn generation(&self) -> u64 {
        self.routes().generation
    }

    /// Applies a reloaded config: its sources replace the live ones for every request that arrives from now on.
    /// Changes outside `[sources]` wait for a restart, and the log line says which.
    pub fn reload(&self, mut settings: Settings) {
        let sources = std::mem::take(&mut settings.sources);
        let restart = self.settings.differences(&settings);
        // Reloads come one at a time (from one task), so the routes are built outside the lock and swapped in.
        let live = self.routes();
        let generation = live.generation + 1;
        let routes = Routes::build(generation, sources, &self.metrics, Some(&live));
        let changes = Changes::between(&live, &routes);
        *self.routes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
        self.metrics.config_applied(generation);
        tracing::info!(
            generation,
            added = ?changes.added,
            removed = ?changes.removed,
            "config generation {generation} live"
        );
        if !restart.is_empty() {
            tracing::warn!(
                generation,
                sections = ?restart,
                "the reloaded config also changes sections that take effect at the next restart only"
            );
        }
    }
}

/// Sources added and removed by a reload, for the log line.
struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
}

impl Changes {
    fn between(before: &Routes, after: &Routes) -> Changes {
        let missing = |from: &Routes, of: &Routes| {
            let mut names: Vec<String> =
                from.by_name.keys().filter(|n| !of.by_name.contains_key(*n)).cloned().collect();
            names.sort_unstable();
            names
        };
        Changes { added: missing(after, before), removed: missing(before, after) }
    }
}

#[cfg(test)]
mod tests {
    use hookline_config::ingress::Config;
    use prometheus_client::registry::Registry;

    use super::*;

    fn sources(limits: &str) -> BTreeMap<String, Arc<Source>> {
        let text = format!(
            "[sources.shop]\n{limits}\n[sources.shop.verify]\nscheme = \"hmac\"\nheader = \"X-Signature\"\n\
             secrets = [{{ value = \"s\" }}]\n"
        );
        hookline_runtime::config::from_str_with_env::<Config>(&text, Vec::new())
            .and_then(Config::validate)
            .expect("config")
            .sources
    }

    #[test]
    fn a_reload_keeps_a_sources_rate_limit_and_budget_unless_they_changed() {
        let metrics = Metrics::register(&mut Registry::default());
        let limits = "rate_limit = { per_second = 1, burst = 1 }\nmax_in_flight = 1";
        let first = Routes::first(sources(limits), &metrics);
        let shop = first.get("shop").unwrap();
        shop.rate_limit.as_ref().unwrap().try_take().unwrap();
        let _held = shop.budget.as_ref().unwrap().try_acquire().unwrap();

        let same = Routes::build(2, sources(limits), &metrics, Some(&first));
        let shop = same.get("shop").unwrap();
        assert!(shop.rate_limit.as_ref().unwrap().try_take().is_err(), "a reload does not refill the bucket");
        assert!(shop.budget.as_ref().unwrap().is_spent(), "a reload does not add to a spent budget");

        let changed = "rate_limit = { per_second = 2, burst = 1 }\nmax_in_flight = 2";
        let new = Routes::build(3, sources(changed), &metrics, Some(&same));
        let shop = new.get("shop").unwrap();
        assert!(shop.rate_limit.as_ref().unwrap().try_take().is_ok(), "a new limit starts a full bucket");
        assert!(!shop.budget.as_ref().unwrap().is_spent(), "a new bound starts a new budget");
        assert_eq!((first.generation, new.generation), (1, 3));
    }
}
