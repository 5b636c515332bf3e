//! Tests of the `hookline-ingress` binary itself: config errors, `--check`, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hookline-ingress");

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
[kafka]
brokers = "127.0.0.1:1"
[sources.shop.verify]
scheme = "hmac"
header = "X-Signature"
secrets = [{ value = "s" }]
"#;

fn config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Runs the binary on `text` and returns (exit code, stderr).
fn run(text: &str, extra_args: &[&str]) -> (Option<i32>, String) {
    let f = config(text);
    let out =
        Command::new(BIN).arg("--config").arg(f.path()).args(extra_args).env_remove("KAFKA_BROKERS").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unknown_field_stops_the_binary_and_is_named() {
    let (code, err) = run(&GOOD.replace("[server]", "[server]\nlisten_port = 1"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("listen_port"), "{err}");
}

#[test]
fn a_missing_secret_stops_the_binary_and_is_named() {
    let (code, err) =
        run(&GOOD.replace("secrets = [{ value = \"s\" }]", "secrets = [{ env = \"HOOKLINE_IT_UNSET\" }]"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sources.shop.verify.secrets[0].env"), "{err}");
}

#[test]
fn an_unusable_listen_address_stops_the_binary_and_is_named() {
    let (code, err) = run(&GOOD.replace("127.0.0.1:0", "not-an-address"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("server.listen"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, err) = run(&GOOD.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")), &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("server.listen") && err.contains(&port.to_string()), "{err}");
}

#[test]
fn check_validates_without_starting() {
    let (code, err) = run(GOOD, &["--check"]);
    assert_eq!(code, Some(0), "{err}");
    let missing = Command::new(BIN).args(["--config", "/nonexistent/hookline.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/hookline.toml"));
}

#[test]
fn sigterm_stops_the_binary_cleanly() {
    let f = config(GOOD);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .env_remove("KAFKA_BROKERS")
        .env("HOOKLINE_SERVER__DRAIN_TIMEOUT_MS", "2000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "still running before the signal");
    let started = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
