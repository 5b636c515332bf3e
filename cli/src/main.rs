//! `hookline`: the operator's command line. Parses the arguments and runs [`hookline_cli::run`]; the exit
//! codes are documented on [`hookline_cli::Cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hookline_cli::run(hookline_cli::Cli::parse())
}
