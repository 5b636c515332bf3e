//! The SRE surfaces of `deploy/` against the live pipeline: every metric and label the alert rules and the
//! Grafana dashboards use is exported by the real binaries, and a real Prometheus scraping them with the
//! shipped scrape config and rules answers a request rate and the consumer lag, evaluates every rule without
//! error, fires the DLQ alert on poison, and runs every dashboard query.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hookline_e2e::chaos::Cluster;
use hookline_e2e::driver::{self, Load};
use hookline_e2e::observability::{
    dashboard_exprs, dashboards, deploy_dir, exported, missing, referenced_metrics, rules_file, sample_value,
    substitute_variables, Prometheus,
};
use hookline_e2e::{unique, Kafka};

/// A pipeline with the quarantine on that has processed some webhooks, poison included, and refused a forged
/// one (so every family the dashboards show has samples).
async fn busy_cluster() -> Cluster {
    let sources = format!("{}[quarantine]\ntopic = \"{}\"\n", driver::ingress_sources_toml(None), unique("rejected"));
    let c =
        Cluster::start_with(Kafka::start(), 4, 1, &[("HOOKLINE_FAULT_PANIC_ON", driver::PANIC_MARKER)], sources).await;
    let mut load = Load::new(&unique("obs"), 120, 6, 40.0);
    load.poison = 0.3;
    let driven = driver::drive(&c.base_url(), &load).await;
    assert!(driven.sent.iter().all(|s| s.accepted), "the load was not accepted: {:?}", driven.statuses);
    let forged = hookline_e2e::post(
        &format!("{}/webhooks/{}", c.base_url(), driver::SOURCES[0]),
        &[("stripe-signature", "t=1,v1=00".to_owned())],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 401);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_used_by_an_alert_rule_or_a_dashboard_is_exported_with_the_labels_its_selectors_match() {
    let mut c = busy_cluster().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.processor_metric("hookline_processor_events_produced_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the processor published nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ingress_admin = c.ingress_admin(0).unwrap();
    let ingress = hookline_e2e::get(&format!("http://{ingress_admin}/metrics")).await.unwrap().text();
    let processor = hookline_e2e::get(&format!("http://{}/metrics", c.processor_addr(0))).await.unwrap().text();
    let exported = exported(&format!("{ingress}\n{processor}"));

    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let mut used = vec![("rules/hookline.rules.yml".to_owned(), referenced_metrics(&rules))];
    for (name, dashboard) in dashboards() {
        let exprs = dashboard_exprs(&dashboard);
        assert!(exprs.len() >= 10, "{name} has only {} queries", exprs.len());
        used.push((name, referenced_metrics(&exprs.join("\n"))));
    }
    assert!(used.len() >= 4, "expected the rules and three dashboards, found {}", used.len());
    let mut problems = Vec::new();
    for (file, metrics) in &used {
        assert!(metrics.len() >= 8, "{file} names only {} hookline metrics: {metrics:?}", metrics.len());
        problems.extend(missing(metrics, &exported).into_iter().map(|p| format!("{file}: {p}")));
    }
    assert!(problems.is_empty(), "used but not exported by the live binaries:\n{}", problems.join("\n"));
}

/// The shipped scrape config with the test's targets, a 1 s scrape/evaluation interval and the rules file's
/// absolute path; each replaced part must be there, so a change to the shipped file that this test no longer
/// understands fails it.
fn scrape_config(ingress: &str, processor: &str) -> String {
    let shipped = std::fs::read_to_string(deploy_dir().join("prometheus/prometheus.yml")).unwrap();
    let mut config = shipped;
    for (from, to) in [
        ("\"hookline-ingress:9190\"", format!("\"{ingress}\"")),
        ("\"hookline-processor:9091\"", format!("\"{processor}\"")),
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".to_owned()),
        ("- rules/hookline.rules.yml", format!("- {}", rules_file().display())),
    ] {
        assert_eq!(config.matches(from).count(), 1, "deploy/prometheus/prometheus.yml: expected one `{from}`");
        config = config.replace(from, &to);
    }
    config
}

/// Polls `promql` until `accept` holds for its result (or 60 s pass).
async fn eventually(
    prometheus: &Prometheus,
    promql: &str,
    accept: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = prometheus.query(promql).await.unwrap_or_else(|e| panic!("{promql}: {e}"));
        if accept(&result) {
            return result;
        }
        assert!(Instant::now() < deadline, "{promql} never gave the expected answer; last: {result:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_pipeline_with_the_shipped_config_rules_and_dashboards() {
    let c = Cluster::start(Kafka::start(), 4, 1, &[("HOOKLINE_FAULT_PANIC_ON", driver::PANIC_MARKER)]).await;
    let mut c = c;
    let prometheus =
        Prometheus::start(&scrape_config(&c.ingress_admin(0).unwrap().to_string(), &c.processor_addr(0).to_string()))
            .await;

    // Both targets up.
    eventually(&prometheus, "up{job=~\"hookline-ingress|hookline-processor\"} == 1", |r| r.len() == 2).await;

    // Traffic: 30% of the Standard Webhooks source's webhooks are poison (DLQ).
    let mut load = Load::new(&unique("prom"), 300, 6, 30.0);
    load.poison = 0.3;
    let base = c.base_url();
    let traffic = tokio::spawn(async move { driver::drive(&base, &load).await });

    // A request rate: what the overview dashboard's first panel shows.
    let rate = eventually(
        &prometheus,
        "sum by (source) (rate(hookline_ingress_requests_total{job=\"hookline-ingress\",outcome=\"accepted\"}[15s]))",
        |r| r.iter().filter(|s| sample_value(s) > 0.0).count() == 3 && r.iter().map(sample_value).sum::<f64>() > 15.0,
    )
    .await;
    let total: f64 = rate.iter().map(sample_value).sum();
    assert!(total < 45.0, "accepted rate {total}/s while sending 30/s: {rate:?}");

    // The lag: one series per assigned raw partition, in seconds, finite.
    let lag =
        eventually(&prometheus, "max by (partition) (hookline_processor_consumer_lag_seconds)", |r| r.len() == 4).await;
    assert!(lag.iter().all(|s| sample_value(s).is_finite() && sample_value(s) >= 0.0), "{lag:?}");

    let driven = traffic.await.unwrap();
    assert!(driven.sent.iter().all(|s| s.accepted), "the load was not accepted: {:?}", driven.statuses);
    let poison = driven.sent.iter().filter(|s| s.expect == hookline_e2e::checker::Expect::Dlq).count();
    assert!(poison > 0, "no poison was sent");

    // Caught up: no raw record left behind on any partition.
    eventually(&prometheus, "sum(hookline_processor_consumer_lag_records)", |r| {
        r.len() == 1 && sample_value(&r[0]) == 0.0
    })
    .await;

    // The DLQ alert fires for the source that sent poison, and only for it.
    let standard = driver::STANDARD;
    let deadline = Instant::now() + Duration::from_secs(60);
    let firing = loop {
        let alerts = prometheus.api("alerts").await.unwrap();
        let firing: Vec<serde_json::Value> = alerts["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "HooklineDlqRecords" && a["state"] == "firing")
            .collect();
        if !firing.is_empty() {
            break firing;
        }
        assert!(Instant::now() < deadline, "HooklineDlqRecords never fired; alerts: {alerts}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(firing.iter().all(|a| a["labels"]["source"] == standard), "{firing:?}");

    // Every rule of the shipped file was loaded and evaluates without error against the live series.
    let rules = prometheus.api("rules").await.unwrap();
    let mut health: BTreeMap<String, String> = BTreeMap::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let h = rule["health"].as_str().unwrap_or("?").to_owned();
            let detail = rule["lastError"].as_str().unwrap_or("").to_owned();
            health.insert(rule["name"].as_str().unwrap().to_owned(), format!("{h} {detail}").trim().to_owned());
        }
    }
    let shipped = std::fs::read_to_string(rules_file()).unwrap().matches("- alert: ").count();
    assert_eq!(health.len(), shipped, "rules loaded: {health:?}");
    let unhealthy: Vec<_> = health.iter().filter(|(_, h)| h.as_str() != "ok").collect();
    assert!(unhealthy.is_empty(), "rules that did not evaluate cleanly: {unhealthy:?}");

    // Every dashboard query runs (variables set to "all"); the golden signals show data.
    let mut failures = Vec::new();
    let mut with_data = 0;
    let mut total_queries = 0;
    for (name, dashboard) in dashboards() {
        for expr in dashboard_exprs(&dashboard) {
            total_queries += 1;
            let promql = substitute_variables(&expr);
            match prometheus.query(&promql).await {
                Ok(result) if !result.is_empty() => with_data += 1,
                Ok(_) => {}
                Err(e) => failures.push(format!("{name}: {promql}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "dashboard queries Prometheus refused:\n{}", failures.join("\n"));
    assert!(
        with_data * 2 >= total_queries,
        "only {with_data} of {total_queries} dashboard queries returned data on a busy pipeline"
    );
}
