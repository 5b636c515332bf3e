//! Tests of the `hookline-processor` binary itself: config errors, `--check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hookline-processor");

fn run(text: &str, extra_args: &[&str]) -> (Option<i32>, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let out =
        Command::new(BIN).arg("--config").arg(f.path()).args(extra_args).env_remove("KAFKA_BROKERS").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn config_errors_stop_the_binary_and_name_the_field() {
    let (code, err) = run("[state]\ndirectory = '/tmp/x'\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("directory"), "{err}");
    let (code, err) = run("[server]\nlisten = 'nowhere'\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("server.listen"), "{err}");
    let (code, err) = run("[sources.shop]\nevent_type = { json_pointer = 'type' }\n", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sources.shop.event_type.json_pointer"), "{err}");
}

#[test]
fn an_unusable_state_dir_stops_the_binary_and_is_named() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[server]\nlisten = '127.0.0.1:0'\n[kafka]\nbrokers = '127.0.0.1:1'\n[state]\ndir = '{}/sub'\n",
        file.path().display()
    );
    let (code, err) = run(&text, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("state.dir") || err.contains("cannot create"), "{err}");
}

#[test]
fn check_validates_without_starting() {
    let (code, err) = run("", &["--check"]);
    assert_eq!(code, Some(0), "{err}");
}
