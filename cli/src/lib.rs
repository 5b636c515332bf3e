//! # hookline CLI
//!
//! The operator's command line, one module per subcommand: [`tail`] prints a topic's records, [`config`]
//! checks a config file as the binaries load it, [`topics`] creates and describes the topics a config names,
//! [`pipeline`] runs a processor config's pipeline on sample webhooks.
//!
//! Exit codes are part of the interface, for scripts: 0 success, 1 the operation failed (invalid config,
//! cluster unreachable, topic missing), 2 usage error (clap's own). A subcommand reports a failure by
//! returning an [`Error`]; [`run`] prints it and turns it into exit code 1.

pub mod config;
pub mod dlq;
mod error;
pub mod pipeline;
pub mod replay;
pub mod reprocess;
pub mod send;
pub mod tail;
pub mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::error::Error;

/// hookline's command line.
#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 the operation failed (invalid config, cluster unreachable, topic \
                  missing); 2 usage error."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a topic's records as JSON lines, in the shape of schemas/json/*-record.v1.schema.json.
    Tail(tail::TailArgs),
    /// Check a config file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Create or describe the topics a config names.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Send signed webhooks, as the source's provider would, to a running ingress (sandbox, load replay).
    Send(send::SendArgs),
    /// Inspect the DLQ and send chosen records back through the processor.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Re-derive a source's events from the raw topic between two times (after fixing a mapping).
    Replay(replay::ReplayArgs),
    /// Run a processor config's pipeline offline: test files of sample webhooks, or one body from stdin.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
}

/// Runs a parsed command line and returns its exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Tail(args) => tail::tail(&args),
        Command::Config(cmd) => config::run(&cmd),
        Command::Topics(cmd) => topics::run(&cmd),
        Command::Send(args) => send::run(&args),
        Command::Dlq(cmd) => dlq::run(&cmd),
        Command::Replay(args) => replay::run(&args),
        Command::Pipeline(cmd) => pipeline::run(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Reported) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hookline: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["hookline", "tail", "hookline.events", "--follow", "-n", "3"]).unwrap();
        let Command::Tail(t) = cli.command else { panic!("not tail") };
        assert!(t.follow);
        assert_eq!(t.count, Some(3));
        assert!(Cli::try_parse_from(["hookline", "tail"]).is_err(), "the topic is required");
    }

    #[test]
    fn usage_errors_exit_with_2_and_help_documents_the_exit_codes() {
        let e = Cli::try_parse_from(["hookline", "config", "check"]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "the file is required");
        let e = Cli::try_parse_from(["hookline", "topics", "drop"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["hookline", "config", "check", "x.toml", "--kind", "both"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes: 0 success; 1 the operation failed"), "{help}");
        for sub in [["config", "check"], ["topics", "create"], ["topics", "describe"]] {
            let e = Cli::try_parse_from(["hookline", sub[0], sub[1], "--help"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{sub:?} has --help");
            assert_eq!(e.exit_code(), 0);
        }
    }
}
