//! `schemas-check [DIR]`: checks that hookline's published JSON Schemas and their example records are
//! compatible (the rules are in `hookline_schemas::compat`): one line per schema, then each problem, then a
//! summary.
//!
//! DIR is a schemas folder (with `json/` and `examples/`); it defaults to this crate's folder. Exit status: 0
//! compatible, 1 not compatible, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use hookline_schemas::compat;

const USAGE: &str = "usage: schemas-check [DIR]

Checks that every JSON Schema under DIR/json/ (named <name>.v<N>.schema.json) compiles, accepts each
example record under DIR/examples/<name>.v<N>/, and accepts the examples of its earlier versions.
DIR defaults to the hookline-schemas crate folder. Exit status: 0 compatible, 1 not, 2 usage error.";

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let dir = match args.as_slice() {
        [] => compat::crate_dir(),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [dir] if !dir.to_string_lossy().starts_with('-') => PathBuf::from(dir),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match compat::check(&dir) {
        Ok(report) => {
            print!("{report}");
            if report.is_compatible() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("schemas-check: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
