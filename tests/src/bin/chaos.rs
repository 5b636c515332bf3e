//! `hookline-chaos`: runs the fault scenarios against the built binaries and a real broker, and prints the
//! table (`make chaos`). Exit code 1 when any scenario breaks the invariant or its own expectations.
//!
//! ```text
//! hookline-chaos [--short] [SCENARIO...]
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use hookline_e2e::chaos::{self, Scale, SCENARIOS, TABLE_HEADER};

fn main() -> ExitCode {
    let mut scale = Scale::Full;
    let mut names = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--short" => scale = Scale::Short,
            "-h" | "--help" => {
                println!("hookline-chaos [--short] [SCENARIO...]\nscenarios: {}", SCENARIOS.join(", "));
                return ExitCode::SUCCESS;
            }
            name if SCENARIOS.contains(&name) => names.push(name.to_owned()),
            other => {
                eprintln!("hookline-chaos: unknown argument {other:?} (scenarios: {})", SCENARIOS.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if names.is_empty() {
        names = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    hookline_e2e::init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookline-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = Vec::new();
    let mut details = Vec::new();
    let mut failed = false;
    for name in &names {
        eprintln!("chaos: scenario {name} ({scale:?})");
        match runtime.block_on(chaos::run(name, scale)) {
            Ok(row) => {
                eprintln!("{}", chaos::row_line(&row));
                failed |= !row.passed();
                lines.push(chaos::row_line(&row));
                let verdict = if row.passed() { String::new() } else { row.explain() };
                details.push(format!(
                    "{name}: answers {:?}; {}\n{}{verdict}",
                    row.statuses,
                    row.notes.join("; "),
                    row.figures
                ));
            }
            Err(e) => {
                failed = true;
                lines.push(format!("| {name} | could not run: {e:#} |"));
            }
        }
    }
    println!("{TABLE_HEADER}");
    for l in &lines {
        println!("{l}");
    }
    println!();
    for d in &details {
        println!("{d}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
