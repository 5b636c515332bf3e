//! The config loader of both binaries (TOML, `HOOKLINE_*` overrides, validation) over any text: a config or an
//! error naming a field, never a panic.
#![no_main]

use hookline_config::{ingress, processor};
use hookline_runtime::config::from_str_with_env;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // After a NUL: environment overrides, one `NAME=value` a line.
    let (file, env) = text.split_once('\0').unwrap_or((text, ""));
    let env =
        || env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>();
    if let Ok(config) = from_str_with_env::<ingress::Config>(file, env()) {
        let _ = config.validate();
    }
    if let Ok(config) = from_str_with_env::<processor::Config>(file, env()) {
        let _ = config.validate();
    }
});
